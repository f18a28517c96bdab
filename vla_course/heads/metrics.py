"""How good are the samples, and how fast? Four measures.

* :func:`sliced_wasserstein`: a distance between two sample sets that sees
  *both* precision (samples near the data) and mode weights (how much mass each
  mode gets): it is the average, over random 1-D projections, of the distance
  between the sorted projections (the 1-D optimal transport cost).
* :func:`mode_coverage`: for data made of known modes, the fraction of samples
  near a mode (precision), the share each mode receives, how many modes are found.
* :func:`path_straightness` and :func:`rectified_straightness`: how straight the sampler's trajectory from noise to
  action is: straight-line distance / length travelled (1 = a straight line).
* :func:`ms_per_sample`: wall-clock milliseconds per sample.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor


def sliced_wasserstein(x: Tensor, y: Tensor, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between sample sets ``x (N, ...)`` and ``y (M, ...)``.

    Each sample is flattened to a vector. Projections are seeded, so the value is
    deterministic. Different set sizes are compared through quantiles. Two finite
    samples of the *same* distribution give a small positive value (the noise floor).
    """
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"sample sizes differ: {x.shape[1]} vs {y.shape[1]} numbers per sample")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], num_projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    # (projections, samples), sorted along the contiguous last dimension (numpy's sort is the fast one)
    px = torch.from_numpy(np.sort((dirs.T @ x.T).numpy(), axis=-1)).T
    py = torch.from_numpy(np.sort((dirs.T @ y.T).numpy(), axis=-1)).T
    if px.shape[0] > py.shape[0]:
        px = _quantiles(px, py.shape[0])
    elif py.shape[0] > px.shape[0]:
        py = _quantiles(py, px.shape[0])
    return ((px - py) ** 2).mean().sqrt().item()


def _quantiles(sorted_x: Tensor, n: int) -> Tensor:
    """Values of the sorted columns at the ``n`` mid-point levels ``(i + 1/2)/n`` (linear interpolation)."""
    m = sorted_x.shape[0]
    pos = ((torch.arange(n, dtype=torch.float64) + 0.5) / n * m - 0.5).clamp(0, m - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=m - 1)
    w = (pos - lo)[:, None]
    return sorted_x[lo] * (1 - w) + sorted_x[hi] * w


def mode_coverage(samples: Tensor, centers: Tensor, radius: float, weights=None,
                  min_share: float = 0.25) -> dict:
    """Score samples against known mode centres.

    A sample belongs to its nearest centre if it lies within ``radius`` of it,
    otherwise to no mode (it is "off the data").

    Returns a dict:
        precision: fraction of samples within ``radius`` of some mode.
        shares: ``(K,)`` fraction of the on-data samples at each mode.
        coverage: fraction of modes whose share is at least ``min_share`` x their true weight.
        weight_tv: total variation between ``shares`` and the true weights
            (0 = perfect balance, 1 = all mass on modes that should have none).
    """
    samples = samples.reshape(samples.shape[0], -1)
    centers = centers.reshape(centers.shape[0], -1)
    k = centers.shape[0]
    w = torch.full((k,), 1.0 / k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    w = w / w.sum()
    d = torch.cdist(samples.float(), centers.float())
    dmin, idx = d.min(dim=1)
    on = dmin < radius
    counts = torch.bincount(idx[on], minlength=k).float()
    shares = counts / counts.sum().clamp_min(1)
    return {
        "precision": on.float().mean().item(),
        "shares": shares,
        "coverage": (shares >= min_share * w).float().mean().item() if on.any() else 0.0,
        "weight_tv": 0.5 * (shares - w).abs().sum().item() if on.any() else 1.0,
    }


def path_straightness(path: Tensor, reduce: bool = True):
    """Straightness of sampling trajectories ``path (K+1, M, ...)`` from noise to sample.

    ``|x_K - x_0| / sum_k |x_{k+1} - x_k|``: 1 for a straight line, smaller for a
    curved or zig-zag path. Returns the mean over the M samples (or all of them).
    """
    p = path.reshape(path.shape[0], path.shape[1], -1)
    chord = (p[-1] - p[0]).norm(dim=-1)
    length = (p[1:] - p[:-1]).norm(dim=-1).sum(0).clamp_min(1e-12)
    s = chord / length
    return s.mean().item() if reduce else s


def ms_per_sample(fn, num_samples: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``fn()`` (which draws ``num_samples``), in ms per sample."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / num_samples


def rectified_straightness(path: Tensor, reduce: bool = True):
    """Liu et al.'s (2022, "Flow straight and fast") straightness of a sampling trajectory.

    ``S = mean_k |K (x_{k+1} - x_k) - (x_K - x_0)|^2 / mean |x_K - x_0|^2`` for a path of
    ``K`` equal sampler steps ``path (K+1, M, ...)``. It is 0 exactly when the path is a
    straight line travelled at constant speed, which is when one big Euler step is as
    good as many. Unlike :func:`path_straightness` (geometry only) it also counts uneven
    speed: a sampler that moves little for most steps and a lot in the last few is far
    from 0. Returns the mean over samples (normalised by the mean squared chord).
    """
    p = path.reshape(path.shape[0], path.shape[1], -1)
    k = p.shape[0] - 1
    chord = p[-1] - p[0]
    dev = ((k * (p[1:] - p[:-1]) - chord) ** 2).sum(-1).mean(0)
    norm = (chord ** 2).sum(-1).mean().clamp_min(1e-12)
    return (dev.mean() / norm).item() if reduce else dev / norm
