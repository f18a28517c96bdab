"""Action heads: how a policy turns an observation into an action (chunk).

Three heads behind one interface, on action vectors ``(N, D)`` or action
chunks ``(N, H, D)``, optionally conditioned on observations ``(N, C)``:

* ``"regression"``: MSE (or L1) straight to the action, the "one answer" baseline
  (ACT's L1 chunk loss without its CVAE latent; :mod:`.regression`);
* ``"diffusion"``: DDPM with epsilon prediction, DDPM and DDIM samplers (:mod:`.diffusion`);
* ``"flow"``: flow matching as in pi0, t = 1 noise / t = 0 data, Euler sampling, and
  rectified flow (``reflow_pairs``, ``reflow``) (:mod:`.flow`).

>>> from vla_course.heads import fit_head, toy
>>> head = fit_head("flow", toy.two_moons(2000))
>>> head.sample(500, num_steps=10).shape
torch.Size([500, 2])

All three share one network (:class:`.nets.DenoiserMLP`), the same data and
the same training budget, so the comparison is fair. Toy data in :mod:`.toy`,
metrics in :mod:`.metrics`.
"""

from __future__ import annotations

from . import metrics, toy
from .base import Head, check_actions, check_cond, torch_threads
from .diffusion import DiffusionHead
from .flow import FlowHead
from .regression import RegressionHead

HEADS = {"regression": RegressionHead, "diffusion": DiffusionHead, "flow": FlowHead}

_INIT_KWARGS = {"hidden", "depth", "loss", "num_train_steps", "clip_sample", "time_sampler"}
_FIT_KWARGS = {"batch_size", "lr", "num_threads", "progress", "ema"}


def fit_head(kind: str, actions, cond=None, steps: int = 2000, seed: int = 0, **kwargs) -> Head:
    """Train an action head and return it.

    Args:
        kind: ``"regression"``, ``"diffusion"`` or ``"flow"``.
        actions: float tensor ``(N, D)`` (one action per example) or ``(N, H, D)`` (a chunk).
        cond: ``None`` or the observations ``(N, C)``.
        steps: optimiser steps (batch 256, AdamW, cosine learning-rate decay).
        seed: seeds the initial weights, the batches and the noise: same seed, same head.
        **kwargs: ``hidden`` (256), ``depth`` (3), ``batch_size`` (256), ``lr`` (3e-3),
            ``num_threads`` (1: tiny models are fastest on one thread), ``progress``
            (a tqdm bar), ``ema`` (None; e.g. 0.999: use an exponential
            moving average of the weights); ``loss="mse"|"l1"`` for regression; ``num_train_steps`` (100),
            ``clip_sample`` (True: clip the
            predicted clean action to the training range) for diffusion; ``time_sampler``
            (``"beta"``: pi0's Beta(1.5, 1) times, the flow default; ``"uniform"``: the diffusion
            default) for diffusion and flow.

    Returns:
        a head with ``head.sample(num_samples=None, cond=None, num_steps=10)``.

    Raises:
        ValueError: unknown kind or option, wrong shapes, NaN/inf, mismatched cond.
    """
    if kind not in HEADS:
        raise ValueError(f"kind must be one of {sorted(HEADS)}, got {kind!r}")
    unknown = set(kwargs) - _INIT_KWARGS - _FIT_KWARGS
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    actions = check_actions(actions)
    cond = check_cond(cond, actions.shape[0])
    init = {k: v for k, v in kwargs.items() if k in _INIT_KWARGS}
    fit = {k: v for k, v in kwargs.items() if k in _FIT_KWARGS}
    if "loss" in init and kind != "regression":
        raise ValueError("loss= is an option of the regression head only")
    if {"num_train_steps", "clip_sample"} & set(init) and kind != "diffusion":
        raise ValueError("num_train_steps= and clip_sample= are options of the diffusion head only")
    if "time_sampler" in init and kind == "regression":
        raise ValueError("time_sampler= is an option of the diffusion and flow heads")
    head = HEADS[kind](tuple(actions.shape[1:]), 0 if cond is None else cond.shape[1], seed=seed, **init)
    return head.fit(actions, cond, steps=steps, **fit)


__all__ = ["fit_head", "Head", "RegressionHead", "DiffusionHead", "FlowHead", "HEADS",
           "toy", "metrics", "torch_threads"]
