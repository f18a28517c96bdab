"""Value curves (notebook 08, section 3): V and the true return along one live episode, and V's fall after a drop.

    c = value_curve(load_value_function(), lambda robot: ExpertPolicy(robot, mistake="drop"), 45_000, 360)
    c["value"], c["return"], c["mistake_at"]      # (T,), (T,), the step the expert opened the gripper
    falls_after(c["value"], c["mistake_at"])       # (does V fall within a second?, V's change over it)
"""

from __future__ import annotations

import numpy as np
import torch

from vla_course.recap.value import ValueFunctionPredictor

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
