"""RECAP (pi*0.6) in miniature: returns from labelled rollouts, a distributional value function, advantages.

    returns.py   rewards -1 per step, 0 at success, a penalty at failure; returns normalised into [-1, 0]
    value.py     load_value_function(): V(o) for env observations (the model: vla_course.models.value)
                 (V along a live episode: vla_course.training.value_curves)
    advantage.py N-step advantages, the per-task threshold, "advantage: positive/negative" after the instruction
"""

from .returns import mc_returns, steps_to_go_from_value
from .value import ValueFunctionPredictor, load_value_function, spearman

__all__ = ["ValueFunctionPredictor", "load_value_function", "mc_returns", "spearman", "steps_to_go_from_value"]
