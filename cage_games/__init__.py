"""cage-games: common-agency games and self-verifying EPEC solvers.

A *common-agency game* has one agent and several principals. Each principal offers the agent
transfers on the actions; the agent (a quantal, KL-regularised responder) picks its mixed action;
the principals play Nash in their transfer schedules. See ``docs/model.rst`` for the model and
the derivation of every solver and certificate.

>>> import cage_games as cg
>>> game = cg.CommonAgencyGame(cg.Agent.kl_regularized([0.5, 0.5], beta=1.0),
...                            [cg.Principal([0.0, 3.0], name="helpful")])
>>> res = cg.solve(game)
>>> bool(res.success), float(cg.nash_gap(game, res.transfers)) < 1e-8
(True, True)
"""

from cage_games import learning
from cage_games.actions import ActionGrid, ContinuousActions
from cage_games.certificates import BestResponse, NashGap, best_response, nash_gap, payoffs, policy
from cage_games.existence import ExistenceReport, check_existence
from cage_games.game import Agent, CommonAgencyGame, Principal
from cage_games.io import load_game, save_game
from cage_games.learning import LearningResult, learn, plot_learning
from cage_games.menu_auction import (
    MenuAuctionResult,
    beta0_certificate,
    coalition_bounds,
    solve_menu_auction,
    truthful_set_violation,
)
from cage_games.result import EquilibriumResult, RefinementStep
from cage_games.sensitivity import Derivatives, SensitivityReport, sensitivity
from cage_games.sequential import (
    MyopicComparison,
    SequentialGame,
    SequentialResult,
    compare_myopic,
    myopic_policy,
    outcome_distribution,
    solve_sequential,
)
from cage_games.solvers import METHODS, register_method, solve
from cage_games.sweep import SweepTable, sweep
from cage_games.thresholds import ThresholdSystem
from cage_games.uniqueness import (
    DominanceBound,
    UniquenessReport,
    check_uniqueness,
    dominance_bound,
)
from cage_games.zero_temperature import ZeroTemperaturePath, zero_temperature_path

__all__ = [
    "METHODS",
    "ActionGrid",
    "Agent",
    "BestResponse",
    "CommonAgencyGame",
    "ContinuousActions",
    "Derivatives",
    "DominanceBound",
    "EquilibriumResult",
    "ExistenceReport",
    "LearningResult",
    "MenuAuctionResult",
    "MyopicComparison",
    "NashGap",
    "Principal",
    "RefinementStep",
    "SensitivityReport",
    "SequentialGame",
    "SequentialResult",
    "SweepTable",
    "ThresholdSystem",
    "UniquenessReport",
    "ZeroTemperaturePath",
    "best_response",
    "beta0_certificate",
    "check_existence",
    "check_uniqueness",
    "coalition_bounds",
    "compare_myopic",
    "dominance_bound",
    "learn",
    "learning",
    "load_game",
    "myopic_policy",
    "nash_gap",
    "outcome_distribution",
    "payoffs",
    "plot_learning",
    "policy",
    "register_method",
    "save_game",
    "sensitivity",
    "solve",
    "solve_menu_auction",
    "solve_sequential",
    "sweep",
    "truthful_set_violation",
    "zero_temperature_path",
]
__version__ = "0.1.0"
