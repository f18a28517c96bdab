"""``vlm_base``: the tiny VLM's "pretraining", VQA about SO-100 scenes.

PaliGemma is pretrained on web-scale image-text data before pi0 ever sees a robot. Our stand-in:
a few thousand simulator scenes with questions labelled from the sim's state (see
``vla_course.data.vqa``). The recipe

1. renders training scenes and disjoint held-out scenes,
2. builds the word tokenizer from the VQA language **plus** the robot's instruction language
   ("put the red cube in the bin", ...), so pi0 can reuse the tokenizer without growing it,
3. trains the default :class:`~vla_course.models.TinyVLM` (AdamW, linear warmup + cosine decay,
   two cycles with a warm restart, batch 64, one thread, seeded),
4. measures held-out exact match (overall and per question kind) and saves the model.

    vla-course train vlm_base          # -> data/checkpoints/vlm_base/
"""

from __future__ import annotations

import math
import time

import numpy as np

from vla_course.constants import COLORS
from vla_course.train import recipe

# Full budget (see metadata.json's train_seconds: about half an hour on one shared core) and the
# smoke-test budget for tests.
# ``steps`` per cosine cycle; ``cycles`` warm restarts (see ``run_cycles``).
FULL = dict(train_scenes=10_000, heldout_scenes=300, steps=3000, cycles=2, batch_size=64, lr=1e-3, warmup=100,
            weight_decay=0.01)
QUICK = dict(train_scenes=12, heldout_scenes=4, steps=6, cycles=1, batch_size=16, lr=1e-3, warmup=2,
             weight_decay=0.01)

# Words later chapters use (subtasks for pi0.5, RECAP's advantage prompt); they cost 96 parameters each.
LATER_WORDS = ("pick up move to above grasp lift release place open close advantage: positive negative "
               "then done")


def instruction_texts() -> list[str]:
    """The robot's instruction language: every "put the <c> cube in the bin" the sim can say."""
    one = [f"put the {c} cube in the bin" for c in COLORS]
    two = [f"put the {a} cube then the {b} cube in the bin" for a in COLORS for b in COLORS if a != b]
    return one + two


def build_tokenizer(dataset):
    """Tokenizer = VQA questions and answers + instructions + a few words for later chapters."""
    from vla_course.models import WordTokenizer

    tok = WordTokenizer()
    tok.add_texts(sorted(set(dataset.questions) | set(dataset.answers)))
    tok.add_texts(instruction_texts())
    tok.add_words(LATER_WORDS)
    for c in COLORS:  # colours appear in some answers only by chance in tiny (quick) datasets
        tok.add_words(c)
    return tok


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_vlm(model, dataset, steps: int, batch_size: int = 64, lr: float = 1e-3, warmup: int = 100,
              weight_decay: float = 0.01, seed: int = 0, progress: bool = True, rng=None,
              desc: str = "training vlm_base") -> list[float]:
    """Train ``model`` on ``dataset`` (random minibatches of QA pairs). Returns the loss curve."""
    import torch
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    # The loss first falls to the "blind" level (~0.6: answers from language priors, e.g. "no" to
    # "is the red cube in the bin?") and sits there; with peak 1e-3 it broke through only after ~2000
    # steps (metadata.json's loss_curve). A 2e-3 peak with betas (0.9, 0.98) and clipping was still
    # blind at 1500 steps, so we keep 1e-3 and give it a second cosine cycle.
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        batch = dataset.batch(rng.integers(0, len(dataset), size=batch_size))
        loss = model.compute_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    model.eval()
    return losses


def cycle_rng(seed: int, cycle: int) -> np.random.Generator:
    """Minibatch sampler of one cosine cycle (cycle 0 uses plain ``seed``)."""
    return np.random.default_rng(seed if cycle == 0 else [seed, cycle])


def vlm_data(seed: int, quick: bool = False):
    """(train, held-out) VQA datasets of the recipe; deterministic given ``seed``."""
    from vla_course.data.vqa import generate_vqa

    cfg = QUICK if quick else FULL
    train = generate_vqa(cfg["train_scenes"], split="train", seed=seed, progress=not quick)
    held = generate_vqa(cfg["heldout_scenes"], split="heldout", seed=seed, progress=not quick)
    return train, held


def run_cycles(model, train, cfg: dict, seed: int, cycles: range, progress: bool = True) -> list[float]:
    """Cosine cycles ``cycles`` (warm restarts, a fresh AdamW each): the recipe's whole training.

    Cycles are independent given the weights they start from, so training can resume at a cycle
    boundary from a saved checkpoint and compute exactly what an uninterrupted run computes.
    """
    losses = []
    for c in cycles:
        losses += train_vlm(model, train, cfg["steps"], cfg["batch_size"], cfg["lr"], cfg["warmup"],
                            cfg["weight_decay"], seed=seed, progress=progress, rng=cycle_rng(seed, c),
                            desc=f"training vlm_base (cycle {c + 1}/{cfg['cycles']})")
    return losses


def finish(model, train, held, cfg: dict, out_dir, losses: list[float], train_seconds: float,
           render_seconds: float, quick: bool, **extra) -> dict:
    """Evaluate on held-out scenes, save the model, and return the metadata."""
    from vla_course.eval_vqa import evaluate_vqa
    from vla_course.models import count_parameters

    scores = evaluate_vqa(model, held)
    train_scores = evaluate_vqa(model, train.subset(np.arange(min(len(train), len(held)))))
    model.save_pretrained(out_dir)
    if not quick:
        print(f"held-out exact match {scores['overall']:.1%} on {scores['num_questions']} questions; "
              + ", ".join(f"{k} {v:.0%}" for k, v in scores["per_kind"].items()))
    return {
        "data": {"train_scenes": cfg["train_scenes"], "train_questions": len(train),
                 "heldout_scenes": cfg["heldout_scenes"], "heldout_questions": len(held),
                 "heldout_split": "split='heldout' (disjoint seeds)", "vocab_size": len(model.tokenizer)},
        "metrics": {"heldout_exact_match": round(scores["overall"], 4),
                    "heldout_per_kind": {k: round(v, 4) for k, v in scores["per_kind"].items()},
                    "train_exact_match_sample": round(train_scores["overall"], 4),
                    "final_loss": round(float(np.mean(losses[-50:])), 4)},
        "train_seconds": train_seconds,
        "render_seconds": round(render_seconds, 1),
        "steps": cfg["steps"] * cfg["cycles"], "cycles": cfg["cycles"], "steps_per_cycle": cfg["steps"],
        "batch_size": cfg["batch_size"], "lr": cfg["lr"], "warmup": cfg["warmup"],
        "weight_decay": cfg["weight_decay"], "parameters": count_parameters(model),
        "quick": quick,
        "loss_curve": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)],
        **extra,
    }


@recipe("vlm_base", "tiny VLM pretrained on VQA about SO-100 scenes (the PaliGemma stand-in pi0 starts from)")
def vlm_base(seed: int, out_dir, quick: bool = False) -> dict:
    import torch

    from vla_course.models import TinyVLM, VLMConfig

    cfg = QUICK if quick else FULL
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    train, held = vlm_data(seed, quick)
    render_seconds = time.perf_counter() - t0

    torch.manual_seed(seed)
    model = TinyVLM(build_tokenizer(train), VLMConfig())
    t1 = time.perf_counter()
    losses = run_cycles(model, train, cfg, seed, range(cfg["cycles"]), progress=not quick)
    return finish(model, train, held, cfg, out_dir, losses, time.perf_counter() - t1, render_seconds, quick)
