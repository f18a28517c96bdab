"""Training: the one loop every recipe uses (``loop.py``) and the evaluation helpers they share
(``evaluate.py``). Recipes (``vla_course.recipes``) are small configs on top of these."""

from vla_course.training.loop import Source, TrainConfig, TrainLog, lr_at, train

__all__ = ["Source", "TrainConfig", "TrainLog", "lr_at", "train"]
