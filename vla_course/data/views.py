"""Views of a training source without copying its frames: a subset of the rows, extra per-row columns.

RECAP trains on *parts* of the same recordings (filtered BC keeps successes and corrections) and on columns
computed after recording (the return of every frame, its advantage label). A 100k-frame recording holds
gigabytes of pixels, so these views index into it instead of copying: anything with ``len(data)`` and
``data.batch(idx) -> dict`` is a training source (``vla_course.training.Source``).
"""

from __future__ import annotations

import torch
from torch import Tensor


class Subset:
    """Rows ``idx`` of ``data``: ``Subset(data, idx).batch([0, 1])`` is ``data.batch(idx[[0, 1]])``."""

    def __init__(self, data, idx):
        self.data = data
        self.idx = torch.as_tensor(idx, dtype=torch.long)
        if len(self.idx) and (int(self.idx.min()) < 0 or int(self.idx.max()) >= len(data)):
            raise IndexError(f"subset rows must lie in 0..{len(data) - 1}")

    def __len__(self) -> int:
        return len(self.idx)

    def batch(self, idx) -> dict:
        return self.data.batch(self.idx[torch.as_tensor(idx, dtype=torch.long)])

    # the per-frame columns of a ChunkDataset, for the rows of the subset (small: no pixels)
    @property
    def labels(self) -> dict:
        return {k: v[self.idx] for k, v in self.data.labels.items()}

    @property
    def state(self) -> Tensor:
        return self.data.state[self.idx]

    @property
    def episode_index(self) -> Tensor:
        return self.data.episode_index[self.idx]


class WithColumns:
    """``data`` with extra per-row columns (tensors of ``len(data)`` rows) added to every batch."""

    def __init__(self, data, **columns: Tensor):
        for name, col in columns.items():
            if len(col) != len(data):
                raise ValueError(f"column {name!r} has {len(col)} rows, the data {len(data)}")
        self.data, self.columns = data, columns

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, idx) -> dict:
        idx = torch.as_tensor(idx, dtype=torch.long)
        out = self.data.batch(idx)
        out.update({name: col[idx] for name, col in self.columns.items()})
        return out
