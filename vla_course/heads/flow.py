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
over all pairs through a point, so its sampling paths bend where lines to
different actions cross (notebook 03 measures how much).

**Rectified flow** ("reflow", Liu et al. 2022, "Flow straight and fast"): sample
the trained head, keep each noise with the action it produced
(:func:`reflow_pairs`) and train on those pairs instead of independent ones
(:func:`reflow`). The pairs' straight lines cross less, so the new field's paths
are straighter and fewer Euler steps are needed.

``time_sampler`` (an option of :class:`FlowHead`): ``"beta"`` (default) is pi0's
Beta(1.5, 1) above; ``"uniform"`` draws ``t ~ U(0, 1) * 0.999 + 0.001`` (as Liu et
al. and Lipman et al.), to separate the effect of the time weighting from the
effect of the target.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Head

VelocityFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

BETA_ALPHA, BETA_BETA, TIME_SCALE, TIME_OFFSET = 1.5, 1.0, 0.999, 0.001  # pi0 / LeRobot defaults
TIME_SAMPLERS = ("beta", "uniform")


def sample_time(n: int, generator: torch.Generator | None = None, alpha: float = BETA_ALPHA,
                beta: float = BETA_BETA, scale: float = TIME_SCALE, offset: float = TIME_OFFSET,
                device=None) -> Tensor:
    """pi0's training times ``Beta(alpha, beta) * scale + offset`` (default ``Beta(1.5, 1) * 0.999 + 0.001``),
    float32, shape ``(n,)``. The one home of the flow-time sampler: the heads of chapters 02-03 and pi0 use it.

    * With a ``generator`` and ``beta == 1``: Beta(a, 1) has CDF ``F(s) = s**a``, so inverse-CDF sampling is
      one line, ``s = u ** (1/a)`` with ``u ~ U(0, 1)``.
    * With a ``generator`` otherwise: ``torch.distributions.Beta`` under a private RNG seeded from the
      generator (public APIs only; the global RNG is left as it was).
    * Without a generator: ``torch.distributions.Beta`` on the global RNG, as openpi and LeRobot draw it
      (``torch.manual_seed`` makes it reproducible; a test checks the samplers agree in distribution).
    """
    if generator is not None and beta == 1.0:
        t = torch.rand(n, generator=generator) ** (1.0 / alpha)
    elif generator is not None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            t = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(beta))).sample((n,))
    else:
        t = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(beta))).sample((n,))
    return (t * scale + offset).to(device=device, dtype=torch.float32)


def training_times(n: int, generator: torch.Generator | None = None, sampler: str = "beta") -> Tensor:
    """Training times in ``[0.001, 1]``, shape ``(n,)``: ``"beta"`` is pi0's Beta(1.5, 1), ``"uniform"`` is
    Beta(1, 1) = U(0, 1), both ``* 0.999 + 0.001``. The diffusion head maps the same times to its steps."""
    if sampler == "beta":
        return sample_time(n, generator)
    if sampler == "uniform":
        return sample_time(n, generator, alpha=1.0, beta=1.0)
    raise ValueError(f"time_sampler must be one of {TIME_SAMPLERS}, got {sampler!r}")


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
    takes_paired_noise = True

    def __init__(self, *args, time_sampler: str = "beta", **kwargs):
        if time_sampler not in TIME_SAMPLERS:
            raise ValueError(f"time_sampler must be one of {TIME_SAMPLERS}, got {time_sampler!r}")
        super().__init__(*args, **kwargs)
        self.time_sampler = time_sampler

    def velocity(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The learned velocity field ``v_theta(x, t, cond)`` in normalised units."""
        return self.model(x, t, cond)

    def loss(self, actions, cond, generator, noise=None):
        """Flow matching on a batch; ``noise``: each action's own paired noise (reflow), else fresh noise."""
        if noise is None:
            noise = torch.randn(actions.shape, generator=generator)
        t = training_times(actions.shape[0], generator, self.time_sampler)
        return flow_matching_loss(self.velocity, actions, noise, t, cond)

    def _generate(self, noise, cond, num_steps, generator, return_path, **kwargs):
        if kwargs:
            raise ValueError(f"flow sampling takes no options {sorted(kwargs)}")
        return euler_integrate(self.velocity, noise, num_steps, cond, return_path)


@torch.no_grad()
def reflow_pairs(head: FlowHead, num_pairs: int | None = None, cond=None, num_steps: int = 100,
                 seed: int = 0) -> tuple[Tensor, Tensor]:
    """Couple noise with the action the trained ``head`` turns it into: Liu et al.'s reflow data.

    Draws ``noise ~ N(0, I)`` of shape ``(M, *action_shape)`` (normalised units, as ``head.sample``'s
    ``noise=``) from a generator seeded with ``seed`` and integrates the head's ODE with ``num_steps``
    Euler steps (many: the pairs should be the ODE's solution, not a coarse step's).
    ``M = num_pairs``, or ``len(cond)`` for a conditioned head. Returns ``(noise, actions)``, the
    actions in the head's action units.
    """
    if not isinstance(head, FlowHead):
        raise ValueError(f"reflow needs a flow head, got {type(head).__name__}")
    m = len(cond) if cond is not None else num_pairs
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"num_pairs must be a positive int (or pass cond), got {num_pairs!r}")
    noise = torch.randn((m, *head.action_shape), generator=torch.Generator().manual_seed(seed))
    return noise, head.sample(cond=cond, noise=noise, num_steps=num_steps) if cond is not None \
        else head.sample(m, noise=noise, num_steps=num_steps)


def reflow(head: FlowHead, noise: Tensor, actions: Tensor, cond=None, steps: int = 1000,
           **fit_kwargs) -> FlowHead:
    """Rectified flow: a copy of ``head`` trained further on the pairs ``(noise, actions)`` of
    :func:`reflow_pairs` (the 2-rectified flow, initialised from the 1-rectified one, as Liu et al. do).

    The copy keeps the head's normalisation, so ``noise`` means the same latent to both heads.
    ``fit_kwargs`` go to :meth:`Head.fit` (``lr``, ``batch_size``, ``ema``, ...). ``head`` is unchanged.
    """
    if not isinstance(head, FlowHead):
        raise ValueError(f"reflow needs a flow head, got {type(head).__name__}")
    new = copy.deepcopy(head)
    new.losses = []
    return new.fit(actions, cond, steps=steps, noise=noise, keep_normalization=True, **fit_kwargs)
