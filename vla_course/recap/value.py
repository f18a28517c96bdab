"""``load_value_function(name)``: a trained :class:`~vla_course.models.value.ValueFunction` that scores env
observations, one value in [-1, 0] per frame (0: success now; -1: as far from it as the task gets)."""

from __future__ import annotations

import numpy as np
import torch

from vla_course.constants import IMAGE_KEY_PREFIX, STATE_KEY

DEFAULT_VALUE_CHECKPOINT = "value_so100"


class ValueFunctionPredictor:
    """``predict(frames) -> np.ndarray (N,)`` for observation dicts with LeRobot keys, as the env returns them
    (``observation.state`` (6,), ``observation.images.<cam>`` uint8 (S, S, 3), ``task`` str); frames without
    ``task`` take ``instruction``."""

    def __init__(self, model, instruction: str | None = None, batch_size: int = 64):
        self.model = model.eval()
        self.instruction = instruction
        self.batch_size = batch_size
        self.cameras = tuple(model.vlm.config.cameras)

    def batch(self, frames: list[dict]) -> dict:
        tasks = []
        for i, f in enumerate(frames):
            task = f.get("task", self.instruction)
            if not task:
                raise ValueError(f"frame {i} has no 'task' (the instruction); pass instruction=... to "
                                 "load_value_function or add frame['task']")
            tasks.append(task)
        out = {STATE_KEY: torch.as_tensor(np.stack([np.asarray(f[STATE_KEY], dtype=np.float32) for f in frames])),
               "task": tasks}
        for cam in self.cameras:
            key = IMAGE_KEY_PREFIX + cam
            missing = [i for i, f in enumerate(frames) if key not in f]
            if missing:
                raise ValueError(f"frame {missing[0]} has no {key!r}; the value function reads the cameras "
                                 f"{', '.join(self.cameras)} (make_env(cameras=('front', 'wrist')))")
            out[key] = torch.as_tensor(np.stack([np.asarray(f[key]) for f in frames]))
        return out

    @torch.inference_mode()
    def predict(self, frames) -> np.ndarray:
        frames = [frames] if isinstance(frames, dict) else list(frames)
        values = [self.model.values(self.batch(frames[i: i + self.batch_size])).numpy()
                  for i in range(0, len(frames), self.batch_size)]
        return np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32)


def load_value_function(name: str = DEFAULT_VALUE_CHECKPOINT, root=None, instruction: str | None = None):
    """The value function ``data/checkpoints/<name>`` (made by ``vla-course train <name>``), ready to predict."""
    from vla_course.checkpoints import load_pretrained

    return ValueFunctionPredictor(load_pretrained(name, kind="ValueFunction", root=root), instruction=instruction)


def spearman(a, b) -> float:
    """Rank correlation of ``a`` and ``b`` (Pearson's on their ranks; ties broken by order)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return 0.0
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])
