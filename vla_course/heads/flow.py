"""Flow matching on the straight path between noise and action (pi0's action expert).

**Time convention (fixed for the whole course): t = 1 is noise, t = 0 is data**,
as in openpi's and LeRobot's code. The papers (pi0, Lipman et al. 2023, Liu et
al. 2023) write it the other way round, t = 0 noise and t = 1 data; the two are
the same model with t -> 1 - t and the velocity's sign flipped.

With an action ``a`` and a noise sample ``eps ~ N(0, I)``:

* the straight path:   ``x_t = t * eps + (1 - t) * a``
* its velocity:        ``u = dx_t/dt = eps - a``   (the same at every t)
* the loss:            ``|| v_theta(x_t, t, o) - (eps - a) ||^2``  (MSE)
* training times:      ``t = Beta(1.5, 1) * 0.999 + 0.001``, pi0's sampler: it
  puts more weight on noisy times (t near 1), where the velocity is hardest.
* sampling:            Euler from t = 1 to t = 0 with ``dt = -1/num_steps``:
  ``x <- x + dt * v_theta(x, t, o)``; pi0 uses 10 steps.

Each training pair moves in a straight line, but the *learned* field averages
over all pairs through a point, so its paths bend a little; they are still far
straighter than diffusion's, which is why a few Euler steps suffice.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Head

VelocityFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

BETA_ALPHA, BETA_BETA, TIME_SCALE, TIME_OFFSET = 1.5, 1.0, 0.999, 0.001  # pi0 / LeRobot defaults


def sample_time(n: int, generator: torch.Generator | None = None) -> Tensor:
    """pi0's training times ``Beta(1.5, 1) * 0.999 + 0.001``, shape ``(n,)``.

    Beta(1.5, 1) has CDF ``F(s) = s**1.5``, so inverse-CDF sampling is one line:
    ``s = u ** (2/3)`` with ``u ~ U(0, 1)``. (openpi and LeRobot draw the same
    distribution with ``torch.distributions.Beta``; a test checks they agree.)
    """
    u = torch.rand(n, generator=generator)
    return u ** (1.0 / BETA_ALPHA) * TIME_SCALE + TIME_OFFSET


def _bcast(t: Tensor, x: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def interpolate(actions: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """The point at time ``t`` (shape ``(N,)``) on the straight path: ``t*noise + (1-t)*actions``."""
    t = _bcast(t, actions)
    return t * noise + (1 - t) * actions


def velocity_target(actions: Tensor, noise: Tensor) -> Tensor:
    """``d x_t / dt = noise - actions`` (t runs from data at 0 to noise at 1)."""
    return noise - actions


def flow_matching_loss(velocity_fn: VelocityFn, actions: Tensor, noise: Tensor, t: Tensor,
                       cond: Tensor | None = None) -> Tensor:
    """MSE between the predicted velocity at ``x_t`` and the target ``noise - actions``."""
    x_t = interpolate(actions, noise, t)
    return F.mse_loss(velocity_fn(x_t, t, cond), velocity_target(actions, noise))


def euler_integrate(velocity_fn: VelocityFn, noise: Tensor, num_steps: int = 10,
                    cond: Tensor | None = None, return_path: bool = False) -> Tensor:
    """Integrate ``dx/dt = v(x, t)`` from t = 1 (noise) to t = 0 (actions) in ``num_steps`` Euler steps.

    Returns the final ``x`` or, with ``return_path``, all ``num_steps + 1`` states.
    """
    dt = -1.0 / num_steps
    x = noise
    path = [x]
    for step in range(num_steps):
        t = torch.full((x.shape[0],), 1.0 + step * dt)
        x = x + dt * velocity_fn(x, t, cond)
        path.append(x)
    return torch.stack(path) if return_path else x


class FlowHead(Head):
    kind = "flow"

    def velocity(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The learned velocity field ``v_theta(x, t, cond)`` in normalised units."""
        return self.model(x, t, cond)

    def loss(self, actions, cond, generator):
        noise = torch.randn(actions.shape, generator=generator)
        t = sample_time(actions.shape[0], generator)
        return flow_matching_loss(self.velocity, actions, noise, t, cond)

    def _generate(self, noise, cond, num_steps, generator, return_path, **kwargs):
        if kwargs:
            raise ValueError(f"flow sampling takes no options {sorted(kwargs)}")
        return euler_integrate(self.velocity, noise, num_steps, cond, return_path)
