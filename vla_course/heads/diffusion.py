"""The diffusion head: DDPM with epsilon prediction (Ho et al. 2020), as in Diffusion Policy.

Forward (noising) process over ``T`` discrete steps ``k = 0 .. T-1`` with the
cosine schedule of Nichol & Dhariwal (2021), Diffusion Policy's
``squaredcos_cap_v2`` with ``T = 100``:

* ``alpha_bar_k``: how much of the action survives at step k (1 -> ~0),
* ``x_k = sqrt(alpha_bar_k) * a + sqrt(1 - alpha_bar_k) * eps``,
* the network predicts ``eps`` from ``(x_k, k, o)``; the loss is the MSE.

Samplers, both starting from ``x ~ N(0, I)`` and visiting ``num_steps`` of the
``T`` steps (evenly spaced, the last one is ``T-1``):

* **DDPM** (``sampler="ddpm"``): at each step, predict the clean action
  ``x0_hat = (x_k - sqrt(1-alpha_bar_k) eps_hat) / sqrt(alpha_bar_k)``, then draw
  from the Gaussian posterior ``q(x_prev | x_k, x0_hat)``: fresh noise every step.
  With fewer than ``T`` steps this is "respacing" (Nichol & Dhariwal 2021): the
  same formula with the alpha_bar of the visited steps.
* **DDIM** (``sampler="ddim"``, Song et al. 2021): the deterministic (eta = 0)
  update ``x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev) eps_hat``.
  It is an ODE solver: the same noise always gives the same action.

Both are one formula, :func:`ddim_step`, with ``eta = 1`` (DDPM) or ``0`` (DDIM).
As in Diffusion Policy (diffusers' ``clip_sample``: actions normalised to
[-1, 1] by their min and max, ``x0_hat`` clipped to [-1, 1]), ``x0_hat`` is
clipped to the range of the training actions: at the first, noisiest step
``1/sqrt(alpha_bar)`` is about 2000 and amplifies any error in ``eps_hat``.

The time the network sees is ``(k + 1) / T`` in (0, 1]: like the flow head,
1 is noise and near 0 is data, so the two heads share one network class.

``time_sampler`` (an option of :class:`DiffusionHead`): ``"uniform"`` (default, as
DDPM and Diffusion Policy) draws the training step k uniformly; ``"beta"`` draws
the time ``(k + 1) / T`` from pi0's Beta(1.5, 1), the flow head's weighting, so
that the two heads can be compared with the same weighting.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Head
from .flow import TIME_SAMPLERS, training_times

NUM_TRAIN_STEPS = 100


def cosine_alpha_bar(num_train_steps: int = NUM_TRAIN_STEPS, s: float = 0.008,
                     max_beta: float = 0.999) -> Tensor:
    """``alpha_bar_k`` for ``k = 0..T-1`` of the cosine schedule (betas capped at ``max_beta``)."""
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f((k + 1) / num_train_steps) / f(k / num_train_steps), max_beta)
             for k in range(num_train_steps)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0).float()


def sampling_timesteps(num_steps: int, num_train_steps: int = NUM_TRAIN_STEPS) -> list[int]:
    """The ``num_steps`` training steps a sampler visits, noisiest first ("trailing" spacing).

    ``num_steps = T`` visits every step; ``num_steps = 1`` jumps from ``T-1`` to data.
    """
    if num_steps > num_train_steps:
        raise ValueError(f"num_steps must be <= {num_train_steps} (the training steps), got {num_steps}")
    return [round((i + 1) * num_train_steps / num_steps) - 1 for i in reversed(range(num_steps))]


def add_noise(actions: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """``x_k = sqrt(alpha_bar_k) a + sqrt(1 - alpha_bar_k) eps``; ``alpha_bar`` has shape ``(N,)``."""
    ab = alpha_bar.reshape(-1, *([1] * (actions.ndim - 1)))
    return ab.sqrt() * actions + (1 - ab).sqrt() * noise


def ddim_step(x: Tensor, eps_hat: Tensor, ab: float, ab_prev: float, eta: float,
              noise: Tensor | None = None, clip: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """One step from ``alpha_bar = ab`` to ``ab_prev``: DDPM for ``eta=1``, DDIM for ``eta=0``.

    ``clip = (low, high)`` bounds ``x0_hat`` (broadcast over the last dimension).
    Returns ``(x_prev, x0_hat)``. ``sigma^2 = eta^2 (1-ab_prev)/(1-ab) (1 - ab/ab_prev)`` is
    the DDPM posterior variance; with it the update is exactly the DDPM posterior mean plus noise.
    """
    x0 = (x - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)
    if clip is not None:
        x0 = torch.maximum(torch.minimum(x0, clip[1]), clip[0])
        eps_hat = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)  # keep x0 and eps consistent
    sigma2 = eta ** 2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma2, 0.0)) * eps_hat
    if sigma2 > 0:
        x_prev = x_prev + math.sqrt(sigma2) * noise
    return x_prev, x0


def training_steps(n: int, num_train_steps: int = NUM_TRAIN_STEPS, generator: torch.Generator | None = None,
                   sampler: str = "uniform") -> Tensor:
    """Training steps ``k`` in ``0 .. T-1``, shape ``(n,)``: uniform (DDPM), or ``"beta"``: the step whose
    time ``(k + 1) / T`` is nearest above a draw of the flow head's ``t`` (pi0's Beta(1.5, 1))."""
    if sampler == "uniform":
        return torch.randint(0, num_train_steps, (n,), generator=generator)
    t = training_times(n, generator, sampler)
    return ((t * num_train_steps).ceil().long() - 1).clamp(0, num_train_steps - 1)


class DiffusionHead(Head):
    kind = "diffusion"

    def __init__(self, *args, num_train_steps: int = NUM_TRAIN_STEPS, clip_sample: bool = True,
                 time_sampler: str = "uniform", **kwargs):
        if time_sampler not in TIME_SAMPLERS:
            raise ValueError(f"time_sampler must be one of {TIME_SAMPLERS}, got {time_sampler!r}")
        super().__init__(*args, **kwargs)
        self.time_sampler = time_sampler
        self.num_train_steps = num_train_steps
        self.clip_sample = clip_sample
        self.alpha_bar = cosine_alpha_bar(num_train_steps)
        self.clip_range: tuple[Tensor, Tensor] | None = None

    def fit(self, actions, cond=None, **kwargs):
        super().fit(actions, cond, **kwargs)
        flat = self.normalize(actions).reshape(-1, actions.shape[-1])
        self.clip_range = (flat.min(0).values, flat.max(0).values)
        return self

    def epsilon(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Tensor:
        """The predicted noise ``eps_theta(x_k, k, cond)``; ``k`` integer steps, shape ``(N,)``."""
        return self.model(x, (k.float() + 1) / self.num_train_steps, cond)

    def loss(self, actions, cond, generator):
        noise = torch.randn(actions.shape, generator=generator)
        k = training_steps(actions.shape[0], self.num_train_steps, generator, self.time_sampler)
        x_k = add_noise(actions, noise, self.alpha_bar[k])
        return F.mse_loss(self.epsilon(x_k, k, cond), noise)

    def _generate(self, noise, cond, num_steps, generator, return_path, sampler: str = "ddpm"):
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        eta = 1.0 if sampler == "ddpm" else 0.0
        steps = sampling_timesteps(num_steps, self.num_train_steps)
        x, path = noise, [noise]
        for i, k in enumerate(steps):
            ab = self.alpha_bar[k].item()
            ab_prev = self.alpha_bar[steps[i + 1]].item() if i + 1 < len(steps) else 1.0
            eps_hat = self.epsilon(x, torch.full((x.shape[0],), k), cond)
            z = torch.randn(x.shape, generator=generator) if eta > 0 else None
            x, _ = ddim_step(x, eps_hat, ab, ab_prev, eta, z, self.clip_range if self.clip_sample else None)
            path.append(x)
        return torch.stack(path) if return_path else x
