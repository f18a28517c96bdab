"""Toy action data sets with several right answers (multimodal), small enough for a laptop.

* :func:`obstacle_trajectories`: 2-D action chunks from a start to a goal that
  go *around* an obstacle, left or right (here: above or below), never through.
  The one-picture argument for generative action heads.
* :func:`ring_of_gaussians`: 8 tight blobs on a circle; easy to count which
  modes a sampler finds and how much weight each gets.
* :func:`two_moons`: two interleaved half-circles; thin, curved support.

Every generator is seeded and returns float32 tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

OBSTACLE_CENTER = (0.5, 0.0)
OBSTACLE_RADIUS = 0.15


@dataclass
class ObstacleData:
    """Trajectories around an obstacle.

    Attributes:
        actions: ``(N, H, 2)`` waypoints ``(x, y)`` from the start near (0, 0) to the goal near (1, 0).
        cond: ``(N, 1)`` the obstacle's vertical offset (the "observation"), or None
            for the ambiguous data set where the obstacle sits dead centre.
        centers: ``(N, 2)`` the obstacle centre of each example.
        side: ``(N,)`` +1 if the demonstrator went above (left of) the obstacle, -1 below.
        radius: the obstacle's radius.
    """

    actions: Tensor
    cond: Tensor | None
    centers: Tensor
    side: Tensor
    radius: float = OBSTACLE_RADIUS


def obstacle_trajectories(n: int, horizon: int = 16, conditional: bool = False, p_above: float = 0.5,
                          seed: int = 0) -> ObstacleData:
    """Demonstrations that go around an obstacle.

    Each trajectory is ``y = side * A * sin(pi x / L)`` sampled at ``horizon``
    evenly spaced ``x`` from 0 to the goal ``L ~ U(0.9, 1.1)``, with the bump
    height ``A ~ U(0.3, 0.45)``: it always clears the obstacle (radius 0.15).

    * ``conditional=False``: the obstacle sits at (0.5, 0); the demonstrator
      goes above with probability ``p_above``, else below. Two equally good answers.
    * ``conditional=True``: the obstacle is shifted up or down by
      ``|c| ~ U(0.05, 0.15)`` and the demonstrator always takes the wider side
      (``side = -sign(c)``). ``cond = c`` tells the policy which: one answer.
    """
    g = torch.Generator().manual_seed(seed)
    length = 0.9 + 0.2 * torch.rand(n, generator=g)
    amp = 0.3 + 0.15 * torch.rand(n, generator=g)
    u = torch.linspace(0, 1, horizon)
    if conditional:
        c = (0.05 + 0.10 * torch.rand(n, generator=g)) * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        side = -torch.sign(c)
    else:
        c = torch.zeros(n)
        side = torch.where(torch.rand(n, generator=g) < p_above, 1.0, -1.0)
    x = u[None, :] * length[:, None]
    y = side[:, None] * amp[:, None] * torch.sin(math.pi * u)[None, :]
    centers = torch.stack([torch.full((n,), OBSTACLE_CENTER[0]), c], dim=1)
    return ObstacleData(torch.stack([x, y], dim=-1), c[:, None] if conditional else None, centers, side)


def segment_distances(traj: Tensor, centers: Tensor) -> Tensor:
    """Distance from each obstacle centre to each segment of its trajectory, ``(N, H-1)``."""
    p, q = traj[:, :-1], traj[:, 1:]
    c = centers[:, None, :]
    d = q - p
    s = (((c - p) * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    closest = p + s[..., None] * d
    return (c - closest).norm(dim=-1)


def passes_through(traj: Tensor, centers, radius: float = OBSTACLE_RADIUS) -> Tensor:
    """Boolean ``(N,)``: does the polyline ``traj (N, H, 2)`` enter the disc of ``radius`` around ``centers``?

    ``centers`` is one centre ``(2,)`` or one per trajectory ``(N, 2)``.
    Checks the segments between waypoints, not only the waypoints.
    """
    centers = torch.as_tensor(centers, dtype=traj.dtype).expand(traj.shape[0], 2)
    return segment_distances(traj, centers).min(dim=1).values < radius


def ring_centers(num_modes: int = 8, radius: float = 2.0) -> Tensor:
    """The ``(num_modes, 2)`` centres of :func:`ring_of_gaussians`."""
    ang = torch.arange(num_modes) * (2 * math.pi / num_modes)
    return radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)


def ring_of_gaussians(n: int, num_modes: int = 8, radius: float = 2.0, std: float = 0.1,
                      weights=None, seed: int = 0) -> Tensor:
    """``(n, 2)`` points from ``num_modes`` Gaussians of ``std`` on a circle.

    With ``weights=None`` every mode gets exactly ``n / num_modes`` points (in a
    random order), so any imbalance in a model's samples is the model's doing.
    """
    g = torch.Generator().manual_seed(seed)
    if weights is None:  # stratified: exactly equal counts (up to rounding), so no mode is over-weighted by chance
        idx = (torch.arange(n) % num_modes)[torch.randperm(n, generator=g)]
    else:
        w = torch.as_tensor(weights, dtype=torch.float32)
        idx = torch.multinomial(w / w.sum(), n, replacement=True, generator=g)
    return ring_centers(num_modes, radius)[idx] + std * torch.randn(n, 2, generator=g)


def two_moons(n: int, noise: float = 0.05, seed: int = 0) -> Tensor:
    """``(n, 2)`` points on two interleaved half circles (as scikit-learn's ``make_moons``)."""
    g = torch.Generator().manual_seed(seed)
    upper = torch.rand(n, generator=g) < 0.5
    ang = math.pi * torch.rand(n, generator=g)
    x = torch.where(upper, torch.cos(ang), 1 - torch.cos(ang))
    y = torch.where(upper, torch.sin(ang), 0.5 - torch.sin(ang))
    return torch.stack([x, y], 1) + noise * torch.randn(n, 2, generator=g)
