r"""Flow matching, in openpi's convention: **t = 1 is noise, t = 0 is data**.

Training (one line per step of ``Pi0.compute_loss``)::

    t   ~ Beta(1.5, 1) * 0.999 + 0.001        # more weight near t=1 (noisy), never exactly 0
    x_t = t * noise + (1 - t) * actions       # straight line from data (t=0) to noise (t=1)
    u   = noise - actions                     # its velocity d x_t / d t: the regression target
    loss = || v_theta(x_t, t, obs) - u ||^2

Inference integrates the learned velocity from pure noise at t=1 down to
t=0 with Euler steps of ``dt = -1/num_steps`` (10 steps in pi0)::

    x <- noise;  for k in 0..9:  t = 1 - k/10;  x <- x + dt * v_theta(x, t)

The papers write the reverse direction (t=0 noise). openpi's code, LeRobot's
and this course use the one above. Heads in ``vla_course.heads`` use it too.
Both functions here match ``lerobot.policies.common.flow_matching`` (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from vla_course.heads import flow as heads_flow


def sample_time(bsize: int, device=None, alpha: float = 1.5, beta: float = 1.0, scale: float = 0.999,
                offset: float = 0.001, generator: torch.Generator | None = None) -> Tensor:
    """pi0's timestep distribution ``Beta(alpha, beta) * scale + offset`` (float32, shape (B,)).

    ``Beta(a, b) = X / (X + Y)`` with ``X ~ Gamma(a)`` and ``Y ~ Gamma(b)``.
    Using a seedable generator makes training reproducible.
    """
    if generator is None:
        t = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(beta))).sample((bsize,))
    else:
        x = torch._standard_gamma(torch.full((bsize,), float(alpha)), generator=generator)
        y = torch._standard_gamma(torch.full((bsize,), float(beta)), generator=generator)
        t = x / (x + y)
    return (t * scale + offset).to(device=device, dtype=torch.float32)


def interpolate(actions: Tensor, noise: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(x_t, u_t)``: the noisy chunk on the straight path and its target velocity ``noise - actions``.

    The same formulas as the action heads of chapters 02-03 (``vla_course.heads.flow``), reused here.
    """
    return heads_flow.interpolate(actions, noise, t), heads_flow.velocity_target(actions, noise)


def euler_integrate(velocity_fn: Callable[[Tensor, Tensor], Tensor], noise: Tensor, num_steps: int = 10) -> Tensor:
    """Integrate ``dx/dt = v(x, t)`` from t=1 (noise) to t=0 with ``num_steps`` Euler steps.

    ``velocity_fn(x_t, t)`` receives ``t`` as a float32 tensor of shape (B,). This is
    ``vla_course.heads.flow.euler_integrate`` with the observation already bound into ``velocity_fn``.
    """
    return heads_flow.euler_integrate(lambda x, t, _cond: velocity_fn(x, t.to(noise.device)), noise, num_steps)


_FREQ_CACHE: dict[tuple, Tensor] = {}


def sincos_time_embedding(t: Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> Tensor:
    """pi0's sine-cosine embedding of a scalar time, (B,) -> (B, dim).

    Periods are spaced geometrically from ``min_period`` to ``max_period``.
    The short periods resolve small changes of t; the long ones tell t=0.1
    from t=0.9. The formula is openpi's ``create_sinusoidal_pos_embedding``.
    openpi computes the angles in float64; float32 is enough here (angle
    error < 1e-3 rad for t <= 1), and it is faster on a CPU.
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
