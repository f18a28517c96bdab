"""The one small network every head shares.

A fair comparison of regression, diffusion and flow matching needs the *same*
network, data and training budget for each; only the training target and the
sampler differ. :class:`DenoiserMLP` is that network: an MLP that reads

* the noisy action ``x`` (flattened, so a chunk ``(H, D)`` becomes ``H*D`` numbers),
* the time ``t`` in ``[0, 1]``, as sin-cos features (as pi0 embeds its flow time),
* an optional observation ``cond``,

and returns a vector the size of ``x``: a velocity for flow matching, the noise
estimate epsilon for diffusion. The regression head uses the same class with no
``x`` and no time input: it maps the observation straight to the action.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


_FREQ_CACHE: dict[tuple, Tensor] = {}


def sincos_time_embedding(t: Tensor, dim: int = 32, min_period: float = 4e-3, max_period: float = 4.0) -> Tensor:
    """pi0's sine-cosine embedding of a scalar time in ``[0, 1]``, ``(N,) -> (N, dim)``; the one home of it
    (the heads here and pi0's action expert both use it).

    Periods are spaced geometrically from ``min_period`` to ``max_period``. The short periods resolve small
    changes of t; the long ones tell t=0.1 from t=0.9. The formula is openpi's
    ``create_sinusoidal_pos_embedding``. openpi computes the angles in float64; float32 is enough here
    (angle error < 1e-3 rad for t <= 1), and it is faster on a CPU.
    """
    if dim % 2:
        raise ValueError(f"time embedding dim must be even, got {dim}")
    key = (dim, min_period, max_period, t.device)
    if key not in _FREQ_CACHE:
        with torch.inference_mode(False):  # a normal tensor, usable later with autograd too
            frac = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64)
            period = min_period * (max_period / min_period) ** frac
            _FREQ_CACHE[key] = (2 * math.pi / period).float().to(t.device)
    ang = t.float()[:, None] * _FREQ_CACHE[key]
    return torch.cat([ang.sin(), ang.cos()], 1)


class DenoiserMLP(nn.Module):
    """``f(x, t, cond) -> R^{x_dim}``, an MLP with SiLU activations.

    Args:
        x_dim: size of the (flattened) action the network reads; 0 for regression.
        out_dim: size of the output (the flattened action).
        cond_dim: size of the observation vector, 0 for none.
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        time_dim: size of the time embedding, 0 for no time input.
    """

    def __init__(self, x_dim: int, out_dim: int, cond_dim: int = 0, hidden: int = 256,
                 depth: int = 3, time_dim: int = 32):
        super().__init__()
        self.x_dim, self.cond_dim, self.time_dim = x_dim, cond_dim, time_dim
        in_dim = x_dim + cond_dim + time_dim
        if in_dim == 0:  # an unconditional regression head: a learned constant
            in_dim = 1
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor | None = None, t: Tensor | None = None,
                cond: Tensor | None = None, batch: int | None = None) -> Tensor:
        parts = []
        if self.x_dim:
            parts.append(x.reshape(x.shape[0], -1))
        if self.time_dim:
            parts.append(sincos_time_embedding(t, self.time_dim))
        if self.cond_dim:
            parts.append(cond)
        if not parts:
            parts.append(torch.ones(batch, 1))
        return self.net(torch.cat(parts, dim=-1))
