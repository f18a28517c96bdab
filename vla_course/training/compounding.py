"""Compounding errors (notebook 08, section 1): how far a cloned policy's states drift from the expert's.

Behaviour cloning fits the expert's actions *on the expert's states*. Acting, every small error moves the arm to
a state the expert never visited, where the clone was never trained and errs more: the errors compound. Ross &
Bagnell (2010): a clone with per-step error eps can pay up to O(T^2 eps) over a horizon of T steps; letting an
expert correct the learner's own states (DAgger; Ross, Gordon & Bagnell 2011) brings it to O(T eps).

The measure, per layout: the distance from where the policy's gripper is at each step (the grasp point
between the fingers, in cm) to the *nearest* point of the scripted expert's gripper path on the same layout
(:func:`expert_path`). Joint angles would mislead: a cube can be grasped at the same place with the wrist
rolled a quarter turn, far in joint space and the same in the world. A policy that follows the expert stays
near 0 all episode; one that compounds drifts away, and keeps drifting. (It measures going where the expert
never goes, not stalling: a gripper that stops on the expert's path scores 0.)::

    ref = expert_path(10_000)                          # (T_e, 3) the expert's grasp point on that layout, cm
    rows = rollout_drift(policy, 10_000, episodes=20)  # per episode: drift (T,), success, grasps, ...
"""

from __future__ import annotations

import numpy as np

from vla_course.constants import CAMERAS, IMAGE_SIZE


def _episode_path(policy, robot, seed: int) -> tuple[np.ndarray, bool, list[tuple[int, str | None]]]:
    """One episode of ``policy`` on layout ``seed``: where its grasp point was at each step ((T, 3), cm),
    success, and the steps at which the cube in the gripper changed ``(step, cube or None)``."""
    from vla_course.control import run_episode

    robot.reset(seed)
    env = robot.env
    states, changes = [], []

    def on_step(frame, action):
        states.append(100.0 * env.fingertip_pos())  # on_step runs after the step: the pose each action led to
        cube = env.held_cube()
        if (changes[-1][1] if changes else None) != cube:
            changes.append((len(states) - 1, cube))

    r = run_episode(robot, policy, on_step=on_step)
    return np.stack(states), bool(r.success), changes


def expert_path(seed: int, task: str = "pick_place", runs: int = 1, noise_std: float = 0.0) -> np.ndarray:
    """Where the scripted expert's grasp point is at every step on layout ``seed``, ``(T, 3)`` in cm. ``runs > 1``
    adds runs with action noise ``noise_std`` (each its own noise seed), so the reference also covers the
    expert's own spread around its plan."""
    from vla_course.policies import ExpertPolicy
    from vla_course.robot import make_robot

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    out = []
    with make_robot("sim", task=task, seed=seed, cameras=()) as robot:
        for k in range(runs):
            expert = ExpertPolicy(robot, noise_std=noise_std if k else 0.0, seed=k)
            out.append(_episode_path(expert, robot, seed)[0])
    return np.concatenate(out)


def drift(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(T,)``: the Euclidean distance from each of ``points`` (T, k) to its nearest ``reference`` point (R, k)."""
    s, r = np.asarray(points, np.float64), np.asarray(reference, np.float64)
    if not len(s) or not len(r):
        raise ValueError(f"drift needs states and reference states, got {len(s)} and {len(r)}")
    d2 = (s ** 2).sum(1)[:, None] + (r ** 2).sum(1)[None, :] - 2.0 * s @ r.T
    return np.sqrt(np.maximum(d2.min(1), 0.0))


def rollout_drift(policy, seed: int, episodes: int, task: str = "pick_place", progress: bool = True,
                  expert_runs: int = 1, expert_noise: float = 0.0) -> list[dict]:
    """``policy`` on layouts ``seed .. seed+episodes-1``, each step's drift from the expert on the same layout.
    ``policy`` has ``reset()``/``act(frame)``, or is a factory ``policy(robot)`` (the scripted expert must read
    the robot it drives: ``rollout_drift(ExpertPolicy, ...)``).

    Per episode: ``seed``, ``success``, ``steps``, ``drift`` (T,), ``grasps`` (steps at which a cube came into
    the gripper), ``releases`` (steps at which one left it) and ``onset`` (:func:`drift_onset`: the step from
    which it stays off the expert's path, or None)."""
    from tqdm import tqdm

    from vla_course.robot import make_robot

    factory = policy if isinstance(policy, type) or not hasattr(policy, "act") else None
    cameras = tuple(getattr(policy, "cameras", CAMERAS))
    rows = []
    with make_robot("sim", task=task, seed=seed, image_size=IMAGE_SIZE, cameras=cameras) as robot:
        if factory is not None:
            policy = factory(robot)
        for i in tqdm(range(episodes), desc="rollouts (drift)", disable=not progress):
            ref = expert_path(seed + i, task, runs=expert_runs, noise_std=expert_noise)
            states, success, changes = _episode_path(policy, robot, seed + i)
            d = drift(states, ref)
            rows.append({"seed": seed + i, "success": success, "steps": len(states), "drift": d,
                         "grasps": [t for t, c in changes if c is not None],
                         "releases": [t for t, c in changes if c is None and t > 0],
                         "onset": drift_onset(d)})
    return rows


ONSET_CM = 3.0  # a grasp point this far from every point of the expert's path (a cube is 2.5 cm) is off it


def drift_onset(d: np.ndarray, threshold: float = ONSET_CM) -> int | None:
    """The first step from which the drift stays above ``threshold`` to the end (None if it ends below it)."""
    d = np.asarray(d)
    below = np.flatnonzero(d <= threshold)
    if not len(d) or (len(below) and below[-1] == len(d) - 1):
        return None
    return int(below[-1] + 1) if len(below) else 0


def running_mean_drift(rows: list[dict], horizon: int) -> np.ndarray:
    """``(horizon,)``: at each step the mean drift of the episodes still running (NaN once none is). A successful
    episode stops at its success; a failed one runs to the time limit."""
    c = np.full((len(rows), horizon), np.nan)
    for k, r in enumerate(rows):
        d = np.asarray(r["drift"])[:horizon]
        c[k, : len(d)] = d
    n = np.sum(~np.isnan(c), axis=0)
    return np.where(n > 0, np.nansum(c, axis=0) / np.maximum(n, 1), np.nan)
