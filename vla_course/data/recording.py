"""Record episodes of any policy into a LeRobotDataset (v3, local disk, offline).

Each frame holds what a real SO-100 recording holds (``lerobot-record``): the joint state, both
camera images, the action actually sent, and the instruction as the frame's ``task``; plus labels
that later chapters read (``load_chunks``), all of shape (1,):

    next.success       bool   True on the last frame of a successful episode
    next.done          bool   True on the last recorded frame of the episode
    episode_success    bool   the episode's outcome, on every frame
    steps_to_go        int64  recorded frames after this one in its episode (0 on the last)
    expert_in_control  bool   the policy's ``expert_in_control`` after it acted (False if it has none)
    subtask_index      int64  position of the policy's ``subtask`` in ``meta/subtasks.json`` ("" = unknown)

Finished episodes are durable as they finish (``durable.py``). Ctrl-C, SIGTERM or SIGHUP drops only
the unfinished episode; after a crash or SIGKILL, ``vla-course record --resume`` (``resume_recording``)
repairs the folder and records the missing episodes, episode i still on layout seed ``seed + i``.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vla_course.constants import CAMERAS, IMAGE_SIZE, MOTOR_KEYS
from vla_course.data import durable

DEFAULT_REPO_ID = "vla_course/so100_pick_place"
KEEP = ("all", "expert")
SUBTASKS = "meta/subtasks.json"


def dataset_features(image_size: int = IMAGE_SIZE, cameras: tuple[str, ...] = CAMERAS) -> dict:
    """LeRobot feature spec of an SO-100 recording (same names as ``lerobot-record`` uses, plus the labels)."""
    names = list(MOTOR_KEYS)
    features = {
        "observation.state": {"dtype": "float32", "shape": (len(names),), "names": names},
        "action": {"dtype": "float32", "shape": (len(names),), "names": names},
    }
    for name, dtype in [("next.success", "bool"), ("next.done", "bool"), ("episode_success", "bool"),
                        ("steps_to_go", "int64"), ("expert_in_control", "bool"), ("subtask_index", "int64")]:
        features[name] = {"dtype": dtype, "shape": (1,), "names": None}
    for cam in cameras:
        features[f"observation.images.{cam}"] = {
            "dtype": "image", "shape": (image_size, image_size, 3), "names": ["height", "width", "channels"]}
    return features


@dataclass
class RecordingResult:
    root: Path
    repo_id: str
    episodes: int  # episodes saved by this call
    frames: int
    successes: list[bool] = field(default_factory=list)
    interrupted: bool = False
    skipped: int = 0  # episodes with no frame to keep (keep="expert": an intervention that never happened)
    total_episodes: int = 0  # episodes in the dataset, earlier runs of a resumed recording included

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else 0.0


def record_dataset(root: str | os.PathLike, *, episodes: int, seed: int = 0, task: str = "pick_place",
                   policy="expert", policy_kwargs: dict | None = None, image_size: int = IMAGE_SIZE,
                   cameras: tuple[str, ...] = CAMERAS, repo_id: str = DEFAULT_REPO_ID, overwrite: bool = False,
                   keep: str = "all", progress: bool = True, task_kwargs: dict | None = None) -> RecordingResult:
    """Record ``episodes`` episodes of ``policy`` on ``task`` (episode i uses layout seed ``seed + i``).

    ``policy`` is a name (``make_policy``) or a factory ``policy(robot, seed) -> policy``. ``keep="all"``
    records every frame, labelled with ``expert_in_control``; ``keep="expert"`` only the frames where the
    expert was in control (an ``InterventionPolicy``'s corrections), skipping episodes with none.

    The root must be new; ``overwrite=True`` replaces a dataset (or an empty folder) only once the new
    recording is complete. Everything is checked, and the first policy built, before anything is
    written. On KeyboardInterrupt (or SIGTERM/SIGHUP) the unfinished episode is dropped, the finished
    ones are kept, and the interrupt is re-raised with ``.recording`` (a ``RecordingResult``) attached.
    """
    _check_count(episodes)
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    settings = {"episodes": episodes, "seed": seed, "task": task, "task_kwargs": dict(task_kwargs or {}),
                "policy": policy if isinstance(policy, str) else None, "policy_kwargs": dict(policy_kwargs or {}),
                "image_size": image_size, "cameras": list(cameras), "keep": keep, "repo_id": repo_id}
    try:
        json.dumps(settings)
    except TypeError as e:
        raise ValueError(f"policy_kwargs and task_kwargs must be JSON values (--resume reads them back): {e}") from None
    return _record(durable.plan_new(root, overwrite), settings, policy, progress)


def resume_recording(root: str | os.PathLike, *, episodes: int | None = None, policy=None,
                     progress: bool = True) -> RecordingResult:
    """Finish a recording that stopped early (or extend it to ``episodes``), with the settings it started with.

    A recording made with a policy factory needs the factory again (``policy=``). After a crash the
    folder is first rolled back to its last saved episode.
    """
    plan = durable.plan_resume(root)
    settings = dict(plan.journal["settings"])
    if episodes is not None:
        _check_count(episodes)
        if episodes < plan.journal["attempted"]:
            raise ValueError(f"{plan.workdir} already has {plan.journal['attempted']} episodes; to record more, "
                             f"ask for more than that (got {episodes})")
        settings["episodes"] = episodes
    if policy is None:
        policy = settings["policy"]
        if policy is None:
            raise ValueError(f"{plan.workdir} was recorded with a policy factory; pass it again: "
                             "resume_recording(root, policy=factory)")
    elif isinstance(policy, str) and policy != settings["policy"]:
        raise ValueError(f"{plan.workdir} was recorded with policy {settings['policy']!r}, not {policy!r}")
    return _record(plan, settings, policy, progress)


def _check_count(episodes) -> None:
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")


def _record(plan: durable.Plan, s: dict, policy, progress: bool) -> RecordingResult:
    from vla_course.policies import make_policy
    from vla_course.robot import SimSO100

    start = plan.journal["attempted"] if plan.journal else 0

    def make(robot, seed):
        if callable(policy):
            return policy(robot, seed)
        return make_policy(policy, robot=robot, **{"seed": seed, **s["policy_kwargs"]})

    robot = SimSO100(task=s["task"], seed=s["seed"] + start, image_size=s["image_size"], cameras=tuple(s["cameras"]),
                     **s["task_kwargs"])
    robot.connect()  # a bad task fails here, before any folder is made
    try:
        first = make(robot, s["seed"] + start) if start < s["episodes"] else None  # so does a bad policy or checkpoint
        with durable.StopSignals() as stop:
            return _record_episodes(plan, s, robot, make, first, start, stop, progress)
    finally:
        robot.disconnect()


def _record_episodes(plan, s, robot, make, first, start, stop, progress) -> RecordingResult:
    import datasets
    from tqdm import tqdm  # text bars: their final state survives in saved notebooks

    from vla_course.control import run_episode

    root, cameras = plan.workdir, tuple(s["cameras"])
    result = RecordingResult(root=root, repo_id=s["repo_id"], episodes=0, frames=0)
    bar = tqdm(total=s["episodes"], initial=start, desc="recording", unit="episode", disable=not progress)
    dataset = journal = lock = None
    try:
        with stop.deferred():  # a signal waits until the folder is set up
            dataset, journal, lock = _open(plan, s, robot.fps, cameras)
        datasets.disable_progress_bars()  # one bar (episodes) is enough (LeRobot's reopening turns them on)
        subtasks = json.loads((root / SUBTASKS).read_text())
        for i in range(start, s["episodes"]):
            seed = s["seed"] + i
            robot.reset(seed)
            pol = first if i == start else make(robot, seed)
            steps = []

            def on_step(frame, action, pol=pol):  # the labels are read after each act
                steps.append((frame, action, bool(getattr(pol, "expert_in_control", False)),
                              str(getattr(pol, "subtask", "") or "")))

            episode = run_episode(robot, pol, on_step=on_step)
            kept = steps if s["keep"] == "all" else [step for step in steps if step[2]]
            with stop.deferred():  # an episode is saved whole or not at all
                if kept:
                    _add_frames(dataset, kept, episode.success, subtasks, cameras)
                    durable.write_json(root / SUBTASKS, subtasks)  # before the episode that uses them
                    durable.save_episode(dataset, root, journal, attempted=i + 1,
                                         episode_seeds=[*journal["episode_seeds"], seed],
                                         successes=[*journal["successes"], bool(episode.success)])
                    result.episodes += 1
                    result.frames += len(kept)
                    result.successes.append(bool(episode.success))
                else:
                    result.skipped += 1
                    durable.commit(root, journal, attempted=i + 1, skipped=journal["skipped"] + 1)
            bar.update(1)
    except BaseException as error:
        bar.close()
        result.interrupted = True
        if journal is not None:  # set up: keep what finished, or remove a folder that holds nothing
            result.total_episodes = journal["saved"]
            with stop.deferred(drop=True):  # a second Ctrl-C does not cut the clean-up short
                _abandon(plan, dataset, journal, lock)
        if isinstance(error, KeyboardInterrupt):
            error.recording = result
        raise
    bar.close()
    result.root = durable.finish(dataset, plan, journal, lock, complete=True)
    result.total_episodes = journal["saved"]
    return result


def _open(plan, s: dict, fps: int, cameras: tuple[str, ...]):
    """Create (or reopen) the dataset, lock it and start its journal; undo all of it if a step fails."""
    root = plan.workdir
    if not plan.fresh:
        lock = durable.acquire(root)
        try:
            dataset = durable.reopen(plan)
            durable.commit(root, plan.journal, state="recording", settings=s)
        except BaseException:
            durable.release(lock, root)
            raise
        return dataset, plan.journal, lock
    dataset, lock = durable.create(plan, s["repo_id"], fps, dataset_features(s["image_size"], cameras)), None
    try:
        lock = durable.acquire(root)
        journal = {"state": "recording", "settings": s, "attempted": 0, "saved": 0, "skipped": 0,
                   "episode_seeds": [], "successes": []}
        durable.write_json(root / SUBTASKS, [])
        durable.commit(root, journal)
    except BaseException:
        durable.remove(plan, lock)
        raise
    return dataset, journal, lock


def _abandon(plan, dataset, journal: dict, lock) -> None:
    """After an error or a signal: keep the saved episodes (or remove a new folder that has none)."""
    with contextlib.suppress(Exception):
        dataset.finalize()
    if plan.fresh and journal["saved"] == 0:
        durable.remove(plan, lock)  # nothing finished: leave nothing behind
    else:
        durable.roll_back(plan.workdir, journal)  # undo a half-saved episode, if the error came mid-save
        durable.commit(plan.workdir, journal, state="interrupted")
        durable.release(lock, plan.workdir)


def _add_frames(dataset, steps: list, success: bool, subtasks: list[str], cameras: tuple[str, ...]) -> None:
    """Add one episode's frames with their labels (the end of the episode is known: it is buffered)."""
    index = {text: k for k, text in enumerate(subtasks)}
    n = len(steps)
    for k, (frame, action, expert, subtask) in enumerate(steps):
        if subtask not in index:
            index[subtask] = len(subtasks)
            subtasks.append(subtask)
        last = k == n - 1
        dataset.add_frame({
            "observation.state": frame["observation.state"],
            "action": action,
            "next.success": np.array([success and last]),
            "next.done": np.array([last]),
            "episode_success": np.array([bool(success)]),
            "steps_to_go": np.array([n - 1 - k], dtype=np.int64),
            "expert_in_control": np.array([expert]),
            "subtask_index": np.array([index[subtask]], dtype=np.int64),
            **{f"observation.images.{c}": frame[f"observation.images.{c}"] for c in cameras},
            "task": frame["task"],
        })


def load_subtasks(root: str | os.PathLike) -> list[str]:
    """The subtask strings that ``subtask_index`` points into (``meta/subtasks.json``)."""
    path = Path(root) / SUBTASKS
    return json.loads(path.read_text()) if path.exists() else []


def load_dataset(root: str | os.PathLike, repo_id: str = DEFAULT_REPO_ID):
    """Reload a recorded dataset through LeRobot's own ``LeRobotDataset`` (offline).

    An unfinished recording loads with a warning; one cut off mid-save raises ``IncompleteRecording``
    (a ``FileNotFoundError``) whose message names the fix, ``vla-course record --resume``.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    resume = f"`vla-course record --resume --root {root}`"
    if not durable.is_dataset(root):
        journal = durable.read_journal(durable.partial_dir(root))
        if journal:
            raise durable.IncompleteRecording(
                f"no dataset at {root} yet: its recording stopped after {journal['attempted']} of "
                f"{journal['settings']['episodes']} episodes (kept in {durable.partial_dir(root)}); {resume} finishes it")
        raise FileNotFoundError(f"no LeRobot dataset at {root}; record one with `vla-course record --root {root}`")
    note = durable.check_readable(root)
    partial = durable.read_journal(durable.partial_dir(root))
    if partial and not note:
        note = (f"{durable.partial_dir(root)} holds an unfinished --overwrite of {root} ({partial['saved']} "
                f"episodes); {root} is still the old dataset until {resume} finishes the new one")
    if note:
        warnings.warn(note, stacklevel=2)
    if json.loads((root / "meta" / "info.json").read_text()).get("total_episodes", 0) == 0:
        raise FileNotFoundError(f"the dataset at {root} has no episodes yet; record some with "
                                f"`vla-course record --root {root} --overwrite --episodes N`")
    try:
        return LeRobotDataset(repo_id, root=root)
    except Exception as e:  # e.g. a parquet file without its footer, which LeRobot reports as a Hub error
        raise ValueError(f"cannot read the dataset at {root} ({' '.join(str(e).split())[:160]}); if its recording "
                         f"was killed, record it again: `vla-course record --root {root} --overwrite ...`") from e
