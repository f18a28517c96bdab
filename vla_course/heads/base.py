"""What every action head shares: input checks, normalisation, the training loop.

A *head* turns an observation (``cond``, optional) into an action, either a
vector ``(D,)`` or a chunk of ``H`` future actions ``(H, D)`` as pi0 predicts.
Subclasses say only two things: the training loss (:meth:`Head.loss`) and how
to turn latent noise into actions (:meth:`Head._generate`). Everything else is
here, so that every head gets the same network, data and training budget.

Actions are normalised per action dimension (mean 0, std 1, statistics over
samples and chunk steps, as LeRobot normalises ``action``); observations the
same per feature. The heads work in normalised units and hand back actions in
the units they were given.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from .nets import DenoiserMLP


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch threads (tiny models are fastest on 1)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def as_float_tensor(x, name: str) -> Tensor:
    """``x`` as a float32 tensor, or a ValueError saying what is wrong."""
    try:
        x = torch.as_tensor(x)
    except Exception as e:  # noqa: BLE001 - re-raised as the documented error
        raise ValueError(f"{name} must be a tensor or array, got {type(x).__name__}") from e
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must hold numbers, got dtype {x.dtype}")
    x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_actions(actions) -> Tensor:
    actions = as_float_tensor(actions, "actions")
    if actions.ndim not in (2, 3):
        raise ValueError(
            f"actions must have shape (N, D) or (N, H, D), got {tuple(actions.shape)}")
    if actions.shape[0] < 1 or actions[0].numel() == 0:
        raise ValueError(f"actions is empty: shape {tuple(actions.shape)}")
    return actions


def check_cond(cond, n: int | None, cond_dim: int | None = None) -> Tensor | None:
    if cond is None:
        return None
    cond = as_float_tensor(cond, "cond")
    if cond.ndim != 2:
        raise ValueError(f"cond must have shape (N, C), got {tuple(cond.shape)}")
    if n is not None and cond.shape[0] != n:
        raise ValueError(f"cond has {cond.shape[0]} rows but actions has {n}")
    if cond_dim is not None and cond.shape[1] != cond_dim:
        raise ValueError(f"cond must have {cond_dim} columns (as in training), got {cond.shape[1]}")
    return cond


def _mean_std(x: Tensor) -> tuple[Tensor, Tensor]:
    flat = x.reshape(-1, x.shape[-1])
    mean = flat.mean(0)
    std = flat.std(0, unbiased=False) if flat.shape[0] > 1 else torch.zeros_like(mean)
    std = torch.where(std < 1e-6, torch.ones_like(std), std)  # a constant dimension stays put
    return mean, std


class Head:
    """Base class of the action heads. Build one with :func:`vla_course.heads.fit_head`."""

    kind = "base"
    uses_time = True  # diffusion and flow read (x, t); regression reads neither
    takes_paired_noise = False  # the flow head's loss can take each action's own noise (reflow)

    def __init__(self, action_shape: tuple[int, ...], cond_dim: int = 0, hidden: int = 256,
                 depth: int = 3, seed: int = 0):
        self.action_shape = tuple(action_shape)
        self.cond_dim = cond_dim
        self.seed = seed
        flat = math.prod(self.action_shape)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = DenoiserMLP(flat if self.uses_time else 0, flat, cond_dim, hidden, depth,
                                   time_dim=32 if self.uses_time else 0)
        self.losses: list[float] = []
        self.action_mean = torch.zeros(self.action_shape[-1])
        self.action_std = torch.ones(self.action_shape[-1])
        self.cond_mean = torch.zeros(cond_dim)
        self.cond_std = torch.ones(cond_dim)

    # ---- normalisation -------------------------------------------------
    def normalize(self, actions: Tensor) -> Tensor:
        return (actions - self.action_mean) / self.action_std

    def unnormalize(self, actions: Tensor) -> Tensor:
        return actions * self.action_std + self.action_mean

    def normalize_cond(self, cond: Tensor | None) -> Tensor | None:
        """Observations in the network's (normalised) units, as the head feeds them to its network."""
        return None if cond is None else (cond - self.cond_mean) / self.cond_std

    # ---- the network, reshaped to the action's shape ------------------------
    def model(self, x: Tensor | None, t: Tensor | None, cond: Tensor | None,
              batch: int | None = None) -> Tensor:
        """The shared network, its output reshaped to ``(N, *action_shape)``."""
        out = self.net(x, t, cond, batch=batch)
        return out.reshape(out.shape[0], *self.action_shape)

    # ---- what subclasses define ----------------------------------------------
    def loss(self, actions: Tensor, cond: Tensor | None, generator: torch.Generator) -> Tensor:
        """Training loss on a batch of *normalised* actions and observations."""
        raise NotImplementedError

    def _generate(self, noise: Tensor, cond: Tensor | None, num_steps: int,
                  generator: torch.Generator, return_path: bool, **kwargs):
        """Map latent noise ``(M, *action_shape)`` to normalised actions (and the path)."""
        raise NotImplementedError

    # ---- training ---------------------------------------------------------
    def fit(self, actions: Tensor, cond: Tensor | None = None, steps: int = 2000,
            batch_size: int = 256, lr: float = 3e-3, num_threads: int | None = 1,
            progress: bool = False, ema: float | None = None, noise: Tensor | None = None,
            keep_normalization: bool = False) -> "Head":
        """AdamW with a cosine learning-rate decay; seeded by ``self.seed``.

        ``ema``: keep an exponential moving average of the weights with this decay
        (warmed up as ``min(ema, (1 + step) / (10 + step))``, as in diffusers) and
        use it after training, as Diffusion Policy and openpi do; None (default) for off.

        ``noise``: ``(N, *action_shape)`` standard-normal latents (normalised units), one paired with
        each training action, used instead of fresh noise (rectified flow's "reflow" trains on
        such pairs; see :func:`vla_course.heads.flow.reflow`). Only heads whose loss takes noise.
        ``keep_normalization``: keep the head's current normalisation statistics instead of
        computing them from ``actions`` and ``cond`` (to continue training a trained head).
        """
        if noise is not None:
            if not self.takes_paired_noise:
                raise ValueError(f"the {self.kind} head cannot train on paired noise")
            noise = as_float_tensor(noise, "noise")
            if tuple(noise.shape) != tuple(actions.shape):
                raise ValueError(f"noise must have the actions' shape {tuple(actions.shape)}, got {tuple(noise.shape)}")
        if not keep_normalization:
            self.action_mean, self.action_std = _mean_std(actions)
            if cond is not None:
                self.cond_mean, self.cond_std = _mean_std(cond)
        a_n, c_n = self.normalize(actions), self.normalize_cond(cond)
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
        it = range(steps)
        if progress:
            from tqdm import tqdm  # text bar: saved notebooks show its final state, not a stale widget
            it = tqdm(it, desc=f"fit {self.kind}", leave=False)
        self.net.train()
        avg = [p.detach().clone() for p in self.net.parameters()] if ema else None
        with torch_threads(num_threads):
            for step in it:
                idx = torch.randint(0, a_n.shape[0], (min(batch_size, a_n.shape[0]),), generator=gen)
                c_b = None if c_n is None else c_n[idx]
                if noise is None:
                    loss = self.loss(a_n[idx], c_b, gen)
                else:
                    loss = self.loss(a_n[idx], c_b, gen, noise=noise[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                opt.step()
                sched.step()
                self.losses.append(loss.item())
                if avg is not None:
                    decay = min(ema, (1 + step) / (10 + step))
                    with torch.no_grad():
                        for a, p in zip(avg, self.net.parameters()):
                            a.lerp_(p.detach(), 1 - decay)
        if avg is not None:
            with torch.no_grad():
                for p, a in zip(self.net.parameters(), avg):
                    p.copy_(a)
        self.net.eval()
        return self

    # ---- sampling -----------------------------------------------------------
    def _prepare(self, num_samples, cond, num_steps, noise, seed):
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if self.cond_dim and cond is None:
            raise ValueError("this head was trained with cond: pass cond=(M, C) to sample")
        if not self.cond_dim and cond is not None:
            raise ValueError("this head was trained without cond: sample with cond=None")
        cond = check_cond(cond, None, self.cond_dim or None)
        if cond is not None:
            if num_samples is not None and num_samples != cond.shape[0]:
                raise ValueError(f"num_samples={num_samples} but cond has {cond.shape[0]} rows")
            m = cond.shape[0]
        else:
            if noise is not None and num_samples is None:
                num_samples = noise.shape[0]
            if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
                raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
            m = num_samples
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        if noise is None:
            noise = torch.randn((m, *self.action_shape), generator=gen)
        else:
            noise = as_float_tensor(noise, "noise")
            if tuple(noise.shape) != (m, *self.action_shape):
                raise ValueError(f"noise must have shape {(m, *self.action_shape)}, got {tuple(noise.shape)}")
        return self.normalize_cond(cond), noise, gen

    @torch.no_grad()
    def sample(self, num_samples: int | None = None, cond=None, num_steps: int = 10, *,
               seed: int | None = None, noise: Tensor | None = None, **kwargs) -> Tensor:
        """Draw actions: ``(M, D)`` or ``(M, H, D)``, M = ``num_samples`` or ``len(cond)``.

        Deterministic: the same arguments give the same samples (``seed``
        defaults to the head's training seed). ``noise`` (in normalised units,
        standard normal) fixes the starting latent, to push the same noise
        through different samplers.
        """
        cond_n, noise, gen = self._prepare(num_samples, cond, num_steps, noise, seed)
        out = self._generate(noise, cond_n, num_steps, gen, return_path=False, **kwargs)
        return self.unnormalize(out)

    @torch.no_grad()
    def sample_path(self, num_samples: int | None = None, cond=None, num_steps: int = 10, *,
                    seed: int | None = None, noise: Tensor | None = None, **kwargs) -> Tensor:
        """Like :meth:`sample` but returns every intermediate state, ``(num_steps+1, M, ...)``.

        ``path[0]`` is the starting noise and ``path[-1]`` the sample, all in
        the action's units (the noise is mapped through the same un-normalisation).
        """
        cond_n, noise, gen = self._prepare(num_samples, cond, num_steps, noise, seed)
        path = self._generate(noise, cond_n, num_steps, gen, return_path=True, **kwargs)
        return self.unnormalize(path)

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.net.parameters())
        return (f"{type(self).__name__}(action_shape={self.action_shape}, cond_dim={self.cond_dim}, "
                f"params={params}, trained_steps={len(self.losses)})")
