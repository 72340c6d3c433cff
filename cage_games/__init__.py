"""cage-games: common-agency games and self-verifying EPEC solvers.

A *common-agency game* has one agent and several principals. Each principal offers the agent
transfers on the actions; the agent (a quantal, KL-regularised responder) picks its mixed action;
the principals play Nash in their transfer schedules. See ``docs/model.rst`` for the model and
the derivation of every solver and certificate.
"""

from cage_games.game import Agent, CommonAgencyGame, Principal
from cage_games.thresholds import ThresholdSystem

__all__ = ["Agent", "CommonAgencyGame", "Principal", "ThresholdSystem"]
__version__ = "0.1.0"
