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


# ---- value curves: V along one live episode (notebook 08, benchmarks/value_curves.py) ----------------------
SECOND = 30  # control steps per second


def value_curve(value: ValueFunctionPredictor, policy, seed: int, max_steps: int, task: str = "pick_place",
                mistake_phase: str | None = "dropped", keep_frames: bool = False) -> dict:
    """One episode of ``policy(robot)`` on layout ``seed``, every frame scored: ``value`` (V, (T,)), ``return``
    (the true normalised return G, (T,)), ``success``, ``steps``, ``held`` (the cube in the gripper after each
    step, or None), ``mistake_at`` (the first step the scripted expert was in ``mistake_phase``, e.g. the step
    it opened the gripper to drop the cube; None if never) and, with ``keep_frames``, the observations."""
    from vla_course.control import run_episode
    from vla_course.recap.returns import mc_returns
    from vla_course.robot import make_robot

    frames, held, mistake_at = [], [], None
    with make_robot("sim", task=task, seed=seed, cameras=value.cameras) as robot:
        pol = policy(robot)
        expert = getattr(pol, "expert", None)

        def on_step(frame, action):
            nonlocal mistake_at
            frames.append({k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in frame.items()})
            held.append(robot.env.held_cube())
            if mistake_phase and mistake_at is None and getattr(expert, "phase", None) == mistake_phase:
                mistake_at = len(frames) - 1

        result = run_episode(robot, pol, on_step=on_step)
    v = value.predict(frames)
    togo = torch.arange(len(frames) - 1, -1, -1)
    g = mc_returns(togo, torch.full((len(frames),), bool(result.success)), max_steps).numpy()
    out = {"seed": seed, "success": bool(result.success), "steps": len(frames), "mistake_at": mistake_at,
           "held": held, "value": v, "return": g}
    if keep_frames:
        out["frames"] = frames
    return out


def falls_after(values, at: int, window: int = SECOND) -> tuple[bool, float]:
    """After step ``at`` (a drop): does V fall within ``window`` steps (the lowest V of the next ``window`` lies
    below V at ``at``), and by how much V changed over them, ``V[at + window] - V[at]``."""
    v = np.asarray(values, dtype=np.float64)
    if not 0 <= at < len(v):
        raise ValueError(f"step {at} is not in the episode's {len(v)} steps")
    after = v[at + 1: at + 1 + window]
    return bool(len(after) and after.min() < v[at]), float(v[min(at + window, len(v) - 1)] - v[at])


def spearman(a, b) -> float:
    """Rank correlation of ``a`` and ``b`` (Pearson's on their ranks; ties broken by order)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return 0.0
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])
