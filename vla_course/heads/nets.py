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


def sincos_time_embedding(t: Tensor, dim: int = 32, max_period: float = 1000.0) -> Tensor:
    """Sin-cos features of a time ``t`` of shape ``(N,)`` in ``[0, 1]`` -> ``(N, dim)``.

    The transformer position code applied to ``t * max_period``: frequencies
    from 1 to ``1/max_period`` so that both coarse and fine differences in ``t``
    are visible to the network.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.float()[:, None] * max_period) * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


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
