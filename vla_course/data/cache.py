"""Recordings made once and reused: the recipes' datasets live in a cache folder, not in the repository.

``recorded_dataset(name, episodes, seed, cache=...)`` returns ``<cache>/datasets/<name>``, recording it with
the scripted expert the first time (or when the cached copy has a different number of episodes). The cache
is ``$VLA_COURSE_CACHE`` if set, else ``outputs/`` beside the package's repository; tests pass a
``tmp_path``, so a test run never reads or writes the checkout's ``outputs/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The cache root: ``cache`` if given, else ``$VLA_COURSE_CACHE``, else ``<repository>/outputs``."""
    return Path(cache or os.environ.get("VLA_COURSE_CACHE") or REPO_ROOT / "outputs")


def dataset_size(root: Path) -> tuple[int, int]:
    """(episodes, frames) of a recorded dataset, from its ``meta/info.json``."""
    info = json.loads((Path(root) / "meta" / "info.json").read_text())
    return info["total_episodes"], info["total_frames"]


def recorded_dataset(name: str, episodes: int, seed: int, task_kwargs: dict | None = None,
                     cache: str | os.PathLike | None = None, progress: bool = True,
                     policy_kwargs: dict | None = None, **record_kwargs) -> Path:
    """Path of a recording ``<cache>/datasets/<name>``, made once and reused. ``policy_kwargs`` go to the scripted
    expert (e.g. ``{"detour": 0.08}``); ``record_kwargs`` to :func:`~vla_course.data.record_dataset`."""
    from vla_course.data import record_dataset

    root = cache_dir(cache) / "datasets" / name
    info = root / "meta" / "info.json"
    if info.exists() and json.loads(info.read_text()).get("total_episodes") == episodes:
        return root
    record_dataset(root, episodes=episodes, seed=seed, overwrite=True, progress=progress,
                   task_kwargs=task_kwargs, policy_kwargs=policy_kwargs, **record_kwargs)
    return root


def layout_seeds(parts) -> dict[int, int]:
    """Episode index -> layout seed, for recordings ``(first seed, episodes, ...)`` loaded in this order."""
    out, offset = {}, 0
    for first, episodes, *_ in parts:
        out.update({offset + e: first + e for e in range(episodes)})
        offset += episodes
    return out


def relative_to_repo(root: Path) -> str:
    """A dataset path for metadata.json: relative to the repository when it lies inside it."""
    root = Path(root)
    return str(root.relative_to(REPO_ROOT)) if root.is_relative_to(REPO_ROOT) else str(root)
