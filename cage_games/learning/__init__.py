"""No-regret learning dynamics between the principals of a common-agency game.

One learner per module (as in Nashpy's ``learning`` subpackage):

=======================  ===================================================================
``"hedge"``              :class:`~cage_games.learning.hedge.Hedge`: exponential weights on a
                         threshold grid (Cesa-Bianchi and Lugosi, 2006, Thm 2.2)
``"optimistic-hedge"``   :class:`~cage_games.learning.optimistic_hedge.OptimisticHedge`
                         (Rakhlin and Sridharan, 2013; Syrgkanis et al., 2015)
``"gradient"``           :class:`~cage_games.learning.gradient_ascent.OnlineGradientAscent`:
                         projected online gradient ascent on the threshold (Zinkevich, 2003)
=======================  ===================================================================

:func:`learn` runs the repeated game and returns a :class:`LearningResult`.
"""

from cage_games.learning._kernel import threshold_payoff_gradients, threshold_payoffs
from cage_games.learning.base import Learner, RegretBound
from cage_games.learning.dynamics import LEARNERS, best_fixed_threshold, learn
from cage_games.learning.gradient_ascent import OnlineGradientAscent
from cage_games.learning.hedge import Hedge
from cage_games.learning.optimistic_hedge import OptimisticHedge
from cage_games.learning.result import LearningResult, plot_learning

__all__ = [
    "LEARNERS",
    "Hedge",
    "Learner",
    "LearningResult",
    "OnlineGradientAscent",
    "OptimisticHedge",
    "RegretBound",
    "best_fixed_threshold",
    "learn",
    "plot_learning",
    "threshold_payoff_gradients",
    "threshold_payoffs",
]
