"""A LeRobotDataset in memory, served as (observation, action chunk) pairs for pi0.

pi0 learns from pairs: the observation at frame ``t`` (both camera images, the
joint state, the instruction) and the next ``H`` actions ``a_t ... a_{t+H-1}``.
Near the end of an episode fewer than ``H`` actions are left; LeRobot repeats
the last one and marks the missing steps in ``action_is_pad`` so the loss can
leave them out. We do the same::

    episode:   a_0 a_1 ... a_97 a_98 a_99 |            (100 frames)
    chunk@97:  a_97 a_98 a_99 a_99 a_99 ... a_99       action_is_pad = [F F F T T ... T]

Every frame also carries the recording's labels (``vla_course.data.recording``), which later chapters
train on: ``next.success``, ``next.done``, the episode's outcome ``episode_success``, ``steps_to_go``
(frames left in the episode), ``expert_in_control`` (RECAP's corrections) and the ``subtask`` in words
(pi0.5). Recordings made before those labels existed still load: what can be derived from the episode
boundaries (done, steps to go, the outcome from ``next.success``) is, the rest is left out.

On a laptop the whole recording fits in memory (a 300-episode recording is
~30k frames, ~1.7 GB of uint8 pixels), so we decode the PNG frames once and
draw random batches straight from tensors: no DataLoader workers, which a
2-core machine cannot spare.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vla_course.constants import ACTION_KEY, CAMERAS, IMAGE_KEY_PREFIX, STATE_KEY


@dataclass
class ChunkDataset:
    """Frames of one or more episodes, with action chunks of length ``chunk_size``.

    Attributes:
        images: camera name -> uint8 (N, S, S, 3).
        state, action: float32 (N, 6), LeRobot units (degrees, gripper 0..100).
        episode_index, frame_index: int64 (N,).
        tasks: the instruction of every frame (list of N strings).
        chunk_size: H.
        stats: LeRobot-style statistics (``{"observation.state": {"mean", "std", ...}, "action": {...}}``).
        target_xy, target_valid: optional localisation labels, float (N, cameras, 2) and bool (N, cameras):
            where the named cube is in each camera (``vla_course.data.localization``).
        labels: per-frame labels (N,) by name (see :data:`LABELS`): bool ``next.success``, ``next.done``,
            ``episode_success``, ``expert_in_control``; int64 ``steps_to_go``.
        subtasks: the subtask text of every frame (list of N strings), or None if the recording has none.
    """

    images: dict[str, Tensor]
    state: Tensor
    action: Tensor
    episode_index: Tensor
    frame_index: Tensor
    tasks: list[str]
    chunk_size: int = 16
    stats: dict = field(default_factory=dict)
    target_xy: Tensor | None = None
    target_valid: Tensor | None = None
    labels: dict[str, Tensor] = field(default_factory=dict)
    subtasks: list[str] | None = None

    def __post_init__(self):
        n = len(self.state)
        # Last frame index (exclusive) of each frame's episode: chunks never cross episodes.
        ends = torch.empty(n, dtype=torch.long)
        ep = self.episode_index
        start = 0
        for i in range(1, n + 1):
            if i == n or ep[i] != ep[start]:
                ends[start:i] = i
                start = i
        self.episode_end = ends

    def __len__(self) -> int:
        return len(self.state)

    @property
    def num_episodes(self) -> int:
        return int(torch.unique(self.episode_index).numel())

    def chunk(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Action chunks (B, H, 6) starting at frames ``idx`` and their ``action_is_pad`` (B, H)."""
        steps = idx[:, None] + torch.arange(self.chunk_size)[None]  # (B, H)
        last = (self.episode_end[idx] - 1)[:, None]
        is_pad = steps > last
        return self.action[torch.minimum(steps, last)], is_pad

    def batch(self, idx: Tensor | np.ndarray | list[int]) -> dict:
        """A training batch with LeRobot keys (images stay uint8, channels-last; absolute action chunks: a model
        with relative actions converts them itself), plus every label the recording has."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        actions, is_pad = self.chunk(idx)
        out = {IMAGE_KEY_PREFIX + cam: im[idx] for cam, im in self.images.items()}
        out.update({STATE_KEY: self.state[idx], ACTION_KEY: actions, "action_is_pad": is_pad,
                    "task": [self.tasks[i] for i in idx.tolist()]})
        if self.target_xy is not None:
            out.update({"target_xy": self.target_xy[idx], "target_valid": self.target_valid[idx]})
        out.update({name: value[idx] for name, value in self.labels.items()})
        if self.subtasks is not None:
            out["subtask"] = [self.subtasks[i] for i in idx.tolist()]
        return out

    def frame(self, i: int) -> dict:
        """Frame ``i`` as the control loop gives it to a policy (no batch dimension)."""
        out = {IMAGE_KEY_PREFIX + cam: im[i].numpy() for cam, im in self.images.items()}
        out.update({STATE_KEY: self.state[i].numpy(), "task": self.tasks[i]})
        return out


def chunk_stats(data: ChunkDataset, delta_mask=None, max_frames: int = 20_000, seed: int = 0) -> dict[str, Tensor]:
    """Mean/std (and min/max) of the action chunks *as the model predicts them*, over valid steps: relative to
    the chunk's start state where ``delta_mask`` is True (``Pi0Config.delta_mask``), absolute elsewhere."""
    from vla_course.models.relative import to_relative

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:max_frames]
    b = data.batch(idx)
    a = to_relative(b[ACTION_KEY], b[STATE_KEY], delta_mask)[~b["action_is_pad"]]  # (M, D)
    return {"mean": a.mean(0), "std": a.std(0), "min": a.min(0).values, "max": a.max(0).values}


def _decode_png(cell) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))


def dataset_stats(ds) -> dict:
    """The state/action statistics LeRobot computed when it wrote the dataset (``ds.meta.stats``)."""
    return {k: {s: torch.as_tensor(np.asarray(v), dtype=torch.float32) for s, v in ds.meta.stats[k].items()}
            for k in (STATE_KEY, ACTION_KEY)}


def merge_stats(stats: list[dict], counts: list[int]) -> dict:
    """Pool LeRobot-style statistics of several datasets (``counts`` frames each): weighted mean,
    pooled variance, overall min/max. Only those four are kept."""
    w = torch.tensor(counts, dtype=torch.float32)
    w = w / w.sum()
    out = {}
    for key in stats[0]:
        mean = sum(wi * s[key]["mean"] for wi, s in zip(w, stats))
        var = sum(wi * (s[key]["std"] ** 2 + (s[key]["mean"] - mean) ** 2) for wi, s in zip(w, stats))
        out[key] = {"mean": mean, "std": var.sqrt(),
                    "min": torch.stack([s[key]["min"] for s in stats]).min(0).values,
                    "max": torch.stack([s[key]["max"] for s in stats]).max(0).values}
    return out


def concat_chunks(parts: list[ChunkDataset]) -> ChunkDataset:
    """One :class:`ChunkDataset` from several (e.g. two recordings); episode indices are renumbered so
    chunks still never cross episodes, and the statistics are pooled (:func:`merge_stats`)."""
    if len(parts) == 1:
        return parts[0]
    labelled = all(p.target_xy is not None for p in parts)
    names = [k for k in parts[0].labels if all(k in p.labels for p in parts)]  # labels every part has
    episodes, offset = [], 0
    for p in parts:
        episodes.append(p.episode_index - p.episode_index.min() + offset)
        offset = int(episodes[-1].max()) + 1
    return ChunkDataset(images={cam: torch.cat([p.images[cam] for p in parts]) for cam in parts[0].images},
                        state=torch.cat([p.state for p in parts]), action=torch.cat([p.action for p in parts]),
                        episode_index=torch.cat(episodes), frame_index=torch.cat([p.frame_index for p in parts]),
                        tasks=[t for p in parts for t in p.tasks], chunk_size=parts[0].chunk_size,
                        stats=merge_stats([p.stats for p in parts], [len(p) for p in parts]),
                        # labels survive only if every part has them (a part without would be unlabelled)
                        target_xy=torch.cat([p.target_xy for p in parts]) if labelled else None,
                        target_valid=torch.cat([p.target_valid for p in parts]) if labelled else None,
                        labels={k: torch.cat([p.labels[k] for p in parts]) for k in names},
                        subtasks=([t for p in parts for t in p.subtasks]
                                  if all(p.subtasks is not None for p in parts) else None))


def load_chunks(root: str | Path | list, chunk_size: int = 16, cameras: tuple[str, ...] = CAMERAS,
                progress: bool = True) -> ChunkDataset:
    """Load a recorded LeRobotDataset (``vla_course.data.record_dataset``) into a :class:`ChunkDataset`.

    Goes through LeRobot's own ``LeRobotDataset`` (so its metadata and statistics
    are the ones a LeRobot training run would use), then decodes every PNG
    frame once, straight into one preallocated uint8 array per camera (a 1400-episode
    recording is ~8 GB of pixels: no room for a second copy). A list of roots gives one
    dataset made of all of them, episodes renumbered and statistics pooled (:func:`merge_stats`).
    """
    from tqdm import tqdm  # a text bar: saved notebooks show its final state, not a stale "0%" widget

    from vla_course.data.recording import load_dataset

    roots = list(root) if isinstance(root, (list, tuple)) else [root]
    datasets = [load_dataset(r) for r in roots]
    tables = [ds.hf_dataset.data.table if hasattr(ds.hf_dataset.data, "table") else ds.hf_dataset.data
              for ds in datasets]
    total = sum(t.num_rows for t in tables)
    images = {}
    for cam in cameras:
        shape = tuple(datasets[0].meta.features[IMAGE_KEY_PREFIX + cam]["shape"])
        images[cam] = torch.empty((total, *shape), dtype=torch.uint8)
    columns = {k: [] for k in ("state", "action", "episode", "frame")}
    labels: list[dict[str, Tensor]] = []
    subtasks: list[list[str] | None] = []
    tasks: list[str] = []
    offset, episode_offset = 0, 0
    for ds, table in zip(datasets, tables):
        col = lambda key, dtype: torch.as_tensor(np.asarray(table.column(key).to_pylist(), dtype=dtype))  # noqa: E731
        episode, frame = col("episode_index", np.int64), col("frame_index", np.int64)
        order = torch.argsort(episode * (int(frame.max()) + 1) + frame)  # episodes in order, frames in order
        columns["state"].append(col(STATE_KEY, np.float32)[order])
        columns["action"].append(col(ACTION_KEY, np.float32)[order])
        episode = episode[order]
        columns["episode"].append(episode - episode.min() + episode_offset)
        columns["frame"].append(frame[order])
        episode_offset = int(columns["episode"][-1].max()) + 1
        names = {int(i): t for t, i in zip(ds.meta.tasks.index, ds.meta.tasks["task_index"])}
        task_index = table.column("task_index").to_pylist()
        tasks += [names[int(task_index[i])] for i in order.tolist()]
        labels.append(_frame_labels(table, order, episode))
        subtasks.append(_subtasks(ds.root, table, order))
        for cam in cameras:
            cells = table.column(IMAGE_KEY_PREFIX + cam)
            for j, i in enumerate(tqdm(order.tolist(), desc=f"decode {cam}", disable=not progress, leave=False)):
                images[cam][offset + j].numpy()[:] = _decode_png(cells[i].as_py())
        offset += table.num_rows
    stats = (dataset_stats(datasets[0]) if len(datasets) == 1 else
             merge_stats([dataset_stats(ds) for ds in datasets], [t.num_rows for t in tables]))
    common = [k for k in labels[0] if all(k in lab for lab in labels)]
    return ChunkDataset(images=images, state=torch.cat(columns["state"]), action=torch.cat(columns["action"]),
                        episode_index=torch.cat(columns["episode"]), frame_index=torch.cat(columns["frame"]),
                        tasks=tasks, chunk_size=chunk_size, stats=stats,
                        labels={k: torch.cat([lab[k] for lab in labels]) for k in common},
                        subtasks=(sum(subtasks, []) if all(s is not None for s in subtasks) else None))


# The per-frame labels a recording carries (``vla_course.data.recording``), and their dtypes.
LABELS = {"next.success": torch.bool, "next.done": torch.bool, "episode_success": torch.bool,
          "steps_to_go": torch.long, "expert_in_control": torch.bool}


def _frame_labels(table, order: Tensor, episode: Tensor) -> dict[str, Tensor]:
    """The labels of one recording's frames (in ``order``; ``episode`` already ordered). Recordings without a
    label get what the episode boundaries give: done on each episode's last frame, the frames left, and the
    outcome from ``next.success``."""
    have = set(table.column_names)
    out = {}
    for name, dtype in LABELS.items():
        if name in have:
            col = np.asarray(table.column(name).to_pylist()).reshape(table.num_rows, -1)[:, 0]
            out[name] = torch.as_tensor(col.astype(np.int64))[order].to(dtype)
    last = torch.ones(len(episode), dtype=torch.bool)
    last[:-1] = episode[1:] != episode[:-1]
    if "next.done" not in out:
        out["next.done"] = last
    if "steps_to_go" not in out:
        # frames left in the episode: count down from each episode's end
        ends = torch.nonzero(last).flatten()
        starts = torch.cat([torch.zeros(1, dtype=torch.long), ends[:-1] + 1])
        out["steps_to_go"] = torch.cat([torch.arange(e - s, -1, -1) for s, e in zip(starts.tolist(), ends.tolist())])
    if "episode_success" not in out and "next.success" in out:
        _, inverse = torch.unique_consecutive(episode, return_inverse=True)
        hits = torch.zeros(int(inverse.max()) + 1, dtype=torch.long).index_add_(0, inverse, out["next.success"].long())
        out["episode_success"] = (hits > 0)[inverse]
    return out


def _subtasks(root, table, order: Tensor) -> list[str] | None:
    """The subtask text of each frame (in ``order``), from ``subtask_index`` and ``meta/subtasks.json``."""
    import json

    path = Path(root) / "meta" / "subtasks.json"
    if "subtask_index" not in table.column_names or not path.exists():
        return None
    names = json.loads(path.read_text())
    index = np.asarray(table.column("subtask_index").to_pylist()).reshape(table.num_rows, -1)[:, 0]
    return [names[int(index[i])] for i in order.tolist()]


def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """DrQ-style augmentation: pad by replicating the border, then crop back at a random offset per image.

    ``images``: uint8 (B, S, S, 3). Shifts of a few pixels make a small
    behaviour-cloning policy much less sensitive to exactly where things appear.
    """
    if pad <= 0:
        return images
    b, s = images.shape[0], images.shape[1]
    x = torch.nn.functional.pad(images.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate")
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(s)[None])  # (B, S)
    cols = (ox[:, None] + torch.arange(s)[None])
    x = x[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None],
          rows[:, None, :, None], cols[:, None, None, :]]
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
