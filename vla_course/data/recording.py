"""Record episodes of any policy into a LeRobotDataset (v3, local disk, offline).

Each frame holds what a real SO-100 recording holds (``lerobot-record``): the joint state,
both camera images, the action actually sent, and the instruction as the frame's ``task``;
plus ``next.success`` so later chapters (RECAP) can tell good episodes from bad ones.

An interrupted recording (Ctrl-C mid-episode) drops the unfinished episode and finalises the
dataset, so everything finished stays a valid dataset that ``LeRobotDataset(repo_id, root=...)``
reloads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vla_course.constants import CAMERAS, IMAGE_SIZE, MOTOR_KEYS

DEFAULT_REPO_ID = "vla_course/so100_pick_place"


def dataset_features(image_size: int = IMAGE_SIZE, cameras: tuple[str, ...] = CAMERAS) -> dict:
    """LeRobot feature spec of an SO-100 recording (same names as ``lerobot-record`` uses)."""
    names = list(MOTOR_KEYS)
    features = {
        "observation.state": {"dtype": "float32", "shape": (len(names),), "names": names},
        "action": {"dtype": "float32", "shape": (len(names),), "names": names},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    for cam in cameras:
        features[f"observation.images.{cam}"] = {
            "dtype": "image", "shape": (image_size, image_size, 3), "names": ["height", "width", "channels"]}
    return features


@dataclass
class RecordingResult:
    root: Path
    repo_id: str
    episodes: int  # episodes saved
    frames: int
    successes: list[bool] = field(default_factory=list)
    interrupted: bool = False
    skipped: int = 0  # episodes with no frame to keep (an intervention that never happened)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else 0.0


def check_root(root: str | os.PathLike, overwrite: bool = False) -> Path:
    """A dataset root must be new (or ``overwrite``) and its parent writable."""
    root = Path(root).expanduser().resolve()
    if root.exists():
        if not overwrite:
            raise FileExistsError(f"dataset root {root} already exists; choose a new --root or delete it first")
        shutil.rmtree(root)
    try:  # really try: permission bits say little for root or read-only file systems
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root.parent):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write to {root.parent} ({e.strerror}); "
                              "choose a --root in a writable folder") from e
    return root


def record_dataset(root: str | os.PathLike, *, episodes: int, seed: int = 0, task: str = "pick_place",
                   policy: str = "expert", policy_kwargs: dict | None = None, image_size: int = IMAGE_SIZE,
                   cameras: tuple[str, ...] = CAMERAS, repo_id: str = DEFAULT_REPO_ID, overwrite: bool = False,
                   progress: bool = True, task_kwargs: dict | None = None) -> RecordingResult:
    """Record ``episodes`` episodes of ``policy`` on ``task`` (episode i uses layout seed ``seed + i``).

    ``policy`` is a name (``make_policy``) or a factory ``policy(robot, seed) -> policy``. A policy with an
    ``expert_in_control`` attribute (``InterventionPolicy``) has only the steps where it is True recorded:
    the episode then starts where the expert took over; an episode where it never did is skipped.

    Returns a ``RecordingResult``. On KeyboardInterrupt the unfinished episode is dropped, the
    dataset is finalised, and the interrupt is re-raised with ``.recording`` attached.
    """
    import datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from tqdm import tqdm  # text bars: their final state survives in saved notebooks

    datasets.disable_progress_bars()  # one bar (episodes) is enough

    from vla_course.control import run_episode
    from vla_course.policies import make_policy
    from vla_course.robot import SimSO100

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    root = check_root(root, overwrite)
    robot = SimSO100(task=task, seed=seed, image_size=image_size, cameras=cameras, **(task_kwargs or {}))
    robot.connect()
    dataset = LeRobotDataset.create(repo_id, fps=robot.fps, features=dataset_features(image_size, cameras),
                                    root=root, robot_type="so100_follower", use_videos=False)
    result = RecordingResult(root=root, repo_id=repo_id, episodes=0, frames=0)
    bar = tqdm(total=episodes, desc="recording", unit="episode", disable=not progress)
    try:
        for i in range(episodes):
            robot.reset(seed + i)
            if callable(policy):
                pol = policy(robot, seed + i)
            else:
                pol = make_policy(policy, robot=robot, **{"seed": seed + i, **(policy_kwargs or {})})
            buffer = []

            def on_step(frame, action, pol=pol):
                if getattr(pol, "expert_in_control", True):
                    buffer.append((frame, action))

            episode = run_episode(robot, pol, on_step=on_step)
            if not buffer:
                result.skipped += 1
                bar.update(1)
                continue
            for k, (frame, action) in enumerate(buffer):
                last = k == len(buffer) - 1
                dataset.add_frame({
                    "observation.state": frame["observation.state"],
                    "action": action,
                    "next.success": np.array([episode.success and last]),
                    **{f"observation.images.{c}": frame[f"observation.images.{c}"] for c in cameras},
                    "task": frame["task"],
                })
            dataset.save_episode()
            result.episodes += 1
            result.frames += len(buffer)
            result.successes.append(episode.success)
            bar.update(1)
    except KeyboardInterrupt as interrupt:
        if dataset.has_pending_frames():
            dataset.clear_episode_buffer()
        result.interrupted = True
        dataset.finalize()
        robot.disconnect()
        bar.close()
        interrupt.recording = result
        raise
    dataset.finalize()
    robot.disconnect()
    bar.close()
    return result


def load_dataset(root: str | os.PathLike, repo_id: str = DEFAULT_REPO_ID):
    """Reload a recorded dataset through LeRobot's own ``LeRobotDataset`` (offline)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not (root / "meta" / "info.json").exists():
        raise FileNotFoundError(f"no LeRobot dataset at {root}; record one with `vla-course record --root {root}`")
    return LeRobotDataset(repo_id, root=root)
