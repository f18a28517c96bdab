"""Normalise state and actions with dataset statistics, and keep the statistics in the checkpoint.

The network wants inputs and targets of order one, but SO-100 joints are in
degrees and the gripper is in 0..100. We normalise each dimension:

* ``"mean_std"``: ``(x - mean) / std``
* ``"quantile"``: map the 1st/99th percentiles to -1/+1, as FAST and pi0.5 do.
  A few outliers then don't squash everything else.

A common real-robot failure (SmolVLA on SO-100 "shaking in place", lerobot
#1270/#1763) is a policy run with statistics other than the ones it was
trained with. Here the statistics are **buffers**, so they are saved in the
``state_dict`` / safetensors file with the weights. Using a normaliser whose
statistics were never set is an error, not a silent identity.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

MODES = ("mean_std", "quantile", "identity")


class Normalizer(nn.Module):
    """Per-dimension normaliser whose statistics are buffers.

    Args:
        dim: feature size (6 for the SO-100: 5 joints + gripper).
        mode: ``"mean_std"``, ``"quantile"`` or ``"identity"``.
        eps: floor on the scale, so a constant dimension does not divide by zero.
    """

    def __init__(self, dim: int, mode: str = "mean_std", eps: float = 1e-3):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.eps = mode, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("q01", -torch.ones(dim))
        self.register_buffer("q99", torch.ones(dim))
        self.register_buffer("is_set", torch.tensor(mode == "identity"))

    def set_stats(self, stats: Mapping) -> None:
        """Load statistics in LeRobot's format, e.g. ``dataset.meta.stats["action"]``:
        a mapping with ``"mean"``/``"std"`` (for mean_std) or ``"q01"``/``"q99"`` (for quantile)."""
        need = {"mean_std": ("mean", "std"), "quantile": ("q01", "q99"), "identity": ()}[self.mode]
        missing = [k for k in need if k not in stats]
        if missing:
            raise KeyError(f"{self.mode} normalisation needs stats {need}; missing {missing}")
        for k in need:
            v = torch.as_tensor(stats[k], dtype=torch.float32).reshape(-1)
            buf = getattr(self, k)
            if v.shape != buf.shape:
                raise ValueError(f"stat {k!r} has shape {tuple(v.shape)}, expected {tuple(buf.shape)}")
            buf.copy_(v)
        self.is_set.fill_(True)

    @staticmethod
    def compute_stats(x: Tensor) -> dict[str, Tensor]:
        """Statistics over every dimension but the last, from data (B, ..., D)."""
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, x.shape[-1])
        return {"mean": x.mean(0), "std": x.std(0, unbiased=False), "min": x.min(0).values,
                "max": x.max(0).values, "q01": torch.quantile(x, 0.01, dim=0),
                "q99": torch.quantile(x, 0.99, dim=0)}

    def _check(self) -> None:
        if not bool(self.is_set):
            raise RuntimeError(
                "normalisation statistics were never set. Call policy.set_normalization_stats(dataset.meta.stats) "
                "(or stats computed from your data) before training or acting; running with the wrong stats is a "
                "classic reason a policy shakes in place on a real arm")

    def _shift_scale(self) -> tuple[Tensor, Tensor]:
        if self.mode == "mean_std":
            return self.mean, self.std.clamp(min=self.eps)
        mid = (self.q99 + self.q01) / 2
        half = ((self.q99 - self.q01) / 2).clamp(min=self.eps)
        return mid, half

    def normalize(self, x: Tensor) -> Tensor:
        if self.mode == "identity":
            return x
        self._check()
        shift, scale = self._shift_scale()
        return (x - shift) / scale

    def unnormalize(self, x: Tensor) -> Tensor:
        if self.mode == "identity":
            return x
        self._check()
        shift, scale = self._shift_scale()
        return x * scale + shift

    def extra_repr(self) -> str:
        return f"dim={self.mean.shape[0]}, mode={self.mode!r}"


def discretize(x: Tensor, bins: int, mode: str) -> Tensor:
    """Normalised values (``Normalizer.normalize``) as bin indices 0..bins-1: ``bins`` uniform bins over
    [-1, 1] (quantile: the 1st..99th percentiles) or [-3, 3] standard deviations (mean_std); values outside
    go to the end bins. How pi0.5 (and the value function of RECAP) write the state as words."""
    span = 1.0 if mode == "quantile" else 3.0
    b = ((x / span).clamp(-1, 1) + 1) / 2 * bins
    return b.floor().long().clamp(0, bins - 1)
