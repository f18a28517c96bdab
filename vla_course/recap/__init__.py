"""RECAP (pi*0.6) in miniature: returns from labelled rollouts, a distributional value function, advantages.

    returns.py   rewards -1 per step, 0 at success, a penalty at failure; returns normalised into [-1, 0]
    value.py     load_value_function(): V(o) for env observations (the model: vla_course.models.value);
                 value_curve(): V and the true return along one live episode
    advantage.py N-step advantages, the per-task threshold, "advantage: positive/negative" after the instruction
"""

from .returns import mc_returns, steps_to_go_from_value
from .value import ValueFunctionPredictor, falls_after, load_value_function, spearman, value_curve

__all__ = ["ValueFunctionPredictor", "falls_after", "load_value_function", "mc_returns", "spearman",
           "steps_to_go_from_value", "value_curve"]
