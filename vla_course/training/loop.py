r"""The one training loop: a weighted mixture of data sources, a dict of losses, seeded and resumable.

Every recipe of the course trains through :func:`train`: the VLM's VQA pretraining, pi0 on robot chunks,
and the later chapters' mixtures (robot chunks + VQA for co-training, FAST targets, subtask text, values)::

    sources = [Source("robot", chunks, batch_size=64),                 # Pi0.compute_loss -> flow (+ text, ...)
               Source("vqa", vqa, batch_size=16, weight=0.5)]          # a batch without actions -> text only
    log = train(model, sources, TrainConfig(steps=6500, lr=1e-3, warmup=150), out_dir=run_dir)

Each step draws one batch from every source, adds ``weight * loss`` of each, and takes one AdamW step.
``model.compute_loss(batch)`` may return a tensor or a dict with ``"loss"`` (the weighted total) and its
terms; every term of every source is logged (``log.losses["robot.flow"]``, ...; one source: ``"flow"``).

**Seeded.** ``torch.manual_seed(seed)`` (the model's own noise and flow times) and one index generator per
source (source 0 uses ``seed`` itself, so a one-source run is exactly what the course's recipes always did).

**Resumable.** With ``out_dir``, every ``checkpoint_every`` steps (and at the end) the loop saves the model,
the optimiser, every random generator and the log to ``out_dir/train_state.pt``. A run started again with
the same arguments continues from there and computes exactly what an uninterrupted run computes (a test
checks it, weight for weight).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

STATE_FILE = "train_state.pt"


@dataclass
class Source:
    """One stream of training batches.

    Args:
        name: label in the loss log ("robot", "vqa", ...).
        data: anything with ``len(data)`` and ``data.batch(idx) -> dict`` (``ChunkDataset``, ``VQADataset``).
        batch_size: rows drawn from it each step.
        weight: its loss's weight in the step's total.
        transform: optional ``transform(batch, generator) -> batch`` (augmentation, e.g. a random shift).
        index_rng: ``"torch"`` (a ``torch.Generator``; the default) or ``"numpy"`` (``np.random.default_rng``,
            the sampler the shipped ``vlm_base`` was trained with).
    """

    name: str
    data: Any
    batch_size: int
    weight: float = 1.0
    transform: Callable | None = None
    index_rng: str = "torch"

    def __post_init__(self):
        if self.index_rng not in ("torch", "numpy"):
            raise ValueError(f"index_rng must be 'torch' or 'numpy', got {self.index_rng!r}")
        if self.batch_size < 1 or len(self.data) < 1:
            raise ValueError(f"source {self.name!r} needs batch_size >= 1 and some data "
                             f"(got batch_size {self.batch_size}, {len(self.data)} rows)")


@dataclass
class TrainConfig:
    """Optimiser and schedule: AdamW, linear warm-up, cosine decay to ``final_lr_frac * lr``."""

    steps: int
    lr: float = 5e-4
    warmup: int = 100
    final_lr_frac: float = 0.1
    weight_decay: float = 1e-4
    decay_vectors: bool = False  # also decay 1-D parameters (norms, biases)? pi0: no; the VLM recipe: yes
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad_norm: float | None = 1.0
    seed: int = 0
    checkpoint_every: int = 500  # steps between saved train states (with out_dir)


@dataclass
class TrainLog:
    """What a run did: every logged term per step, the wall time, the steps run."""

    losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0

    @property
    def loss(self) -> list[float]:
        return self.losses.get("loss", [])

    def final(self, term: str = "loss", last: int = 50) -> float:
        values = self.losses.get(term, [])
        return float(np.mean(values[-last:])) if values else float("nan")


def lr_at(step: int, steps: int, lr: float, warmup: int, final_frac: float = 0.1) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to ``final_frac * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def _optimizer(model, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, list]:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    vectors = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": vectors, "weight_decay": cfg.weight_decay if cfg.decay_vectors else 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas), params


def _generators(sources: list[Source], seed: int) -> list:
    gens = []
    for i, s in enumerate(sources):
        if s.index_rng == "numpy":
            gens.append(np.random.default_rng(seed if i == 0 else [seed, i]))
        else:
            gens.append(torch.Generator().manual_seed(seed if i == 0 else seed * 1000 + i))
    return gens


def _draw(source: Source, gen) -> tuple[dict, Any]:
    n = len(source.data)
    if isinstance(gen, np.random.Generator):
        idx = gen.integers(0, n, size=source.batch_size)
    else:
        idx = torch.randint(0, n, (source.batch_size,), generator=gen)
    batch = source.data.batch(idx)
    if source.transform is not None:
        batch = source.transform(batch, gen)
    return batch


def _gen_state(gen):
    return gen.bit_generator.state if isinstance(gen, np.random.Generator) else gen.get_state()


def _set_gen_state(gen, state) -> None:
    if isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state
    else:
        gen.set_state(state)


def train(model, sources: list[Source] | Source, config: TrainConfig, *, out_dir: str | Path | None = None,
          resume: bool = True, progress: bool = True, desc: str = "train", callback=None) -> TrainLog:
    """Train ``model`` for ``config.steps`` steps on ``sources``; returns the :class:`TrainLog`.

    ``out_dir`` makes the run resumable (see the module docstring); ``resume=False`` starts over.
    ``callback(step, losses)`` is called after every step with that step's logged values (a notebook plots
    with it). The model is left in eval mode.
    """
    from tqdm import tqdm  # a text bar: saved notebooks show its final state, not a stale "0%" widget

    sources = [sources] if isinstance(sources, Source) else list(sources)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    cfg = config
    opt, params = _optimizer(model, cfg)
    gens = _generators(sources, cfg.seed)
    torch.manual_seed(cfg.seed)
    log, start_step, spent = TrainLog(), 0, 0.0
    state_path = Path(out_dir) / STATE_FILE if out_dir is not None else None
    if state_path is not None and resume and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for g, s in zip(gens, state["generators"], strict=True):
            _set_gen_state(g, s)
        torch.set_rng_state(state["torch_rng"])
        log.losses, start_step, spent = state["losses"], state["step"], state["seconds"]

    def save(step: int) -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "generators": [_gen_state(g) for g in gens], "torch_rng": torch.get_rng_state(),
                    "losses": log.losses, "step": step, "seconds": spent + time.perf_counter() - t0}, tmp)
        tmp.replace(state_path)  # atomic: an interrupted save never leaves half a state

    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start_step, cfg.steps), desc=desc, disable=not progress, mininterval=2.0,
               initial=start_step, total=cfg.steps)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup, cfg.final_lr_frac)
        total, logged = 0.0, {}
        for source, gen in zip(sources, gens):
            out = model.compute_loss(_draw(source, gen))
            out = out if isinstance(out, dict) else {"loss": out}
            total = out["loss"] if len(sources) == 1 and source.weight == 1.0 else total + source.weight * out["loss"]
            prefix = "" if len(sources) == 1 else f"{source.name}."
            logged.update({prefix + k: float(v.detach()) for k, v in out.items()})
        if len(sources) > 1:
            logged["loss"] = float(total.detach())
        opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        opt.step()
        for k, v in logged.items():
            log.losses.setdefault(k, []).append(v)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(log.loss[-25:]):.3f}")
        if callback is not None:
            callback(step, logged)
        if state_path is not None and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            save(step + 1)
    model.eval()
    log.seconds, log.steps = spent + time.perf_counter() - t0, cfg.steps
    return log
