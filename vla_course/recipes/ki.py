"""Knowledge Insulation in miniature: ``pi0_ki`` and the recipes it is measured against (notebook 06).

The lesson of pi0.5 and the KI paper (Driess et al. 2025): train a VLA's backbone with the action expert's
flow loss and it learns to move joints and forgets what it knew (here: the backbone inside ``pi0_base``
answers ~30% of held-out VQA where ``vlm_base`` answers ~96%). KI keeps the backbone a VLM:

* the backbone learns the robot's world by predicting the chunk as **FAST tokens** (cross-entropy through
  its own LM head: a language-model loss, the kind it was pretrained with), and keeps its **VQA data**;
* the action expert reads the backbone's keys and values one way, through a **stop-gradient**, so the flow
  loss trains the expert only (``Pi0Config.knowledge_insulation``; the layout ``"knowledge_insulation"``:
  the actions never see the FAST tokens, so the expert cannot copy the discrete answer);
* the state goes into the prefix as words too (``discrete_state_bins``), as in the paper.

Variants, each a registered recipe at the same robot data, seed, steps and robot batch as ``pi0_base``
(recipe (a), plain pi0: the flow loss into the backbone, no VQA)::

    vla-course train pi0_ki          # (d) FAST cross-entropy + VQA co-training + stop-gradient (shipped)
    vla-course train pi0_vqa         # (b) plain pi0 + VQA co-training
    vla-course train pi0_frozen      # (c) the pretrained backbone frozen (only new tokens and the expert learn)
    vla-course train pi0_ki_no_sg    # (e) KI without the stop-gradient

The co-trained variants also see ``vqa_batch_size`` VQA rows per step (the paper's co-training adds data the
same way). Along training, ``snapshot_every`` steps, the model is copied aside; after training every copy is
scored on held-out VQA and on pick_place (held-out layout seeds): the curves of notebook 06.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vla_course.data.cache import cache_dir, dataset_size, layout_seeds, relative_to_repo
from vla_course.recipes.pi0 import (Pi0BaseRecipe, add_image_tokens, base_recording, base_vlm, build_pi0,
                                    model_stats)
from vla_course.train import recipe
from vla_course.training import Source, TrainConfig, train
from vla_course.training.evaluate import chunk_latency_ms, choose_n_action_steps, evaluate_pi0, summary

VARIANTS = {
    "ki": "FAST cross-entropy + VQA co-training + stop-gradient (Knowledge Insulation)",
    "vqa": "plain pi0 (flow loss into the backbone) + VQA co-training",
    "frozen": "pretrained backbone frozen: only the new image tokens and the action expert learn",
    "ki_no_sg": "FAST cross-entropy + VQA co-training, no stop-gradient (the flow loss reaches the backbone)",
}
_BASE = Pi0BaseRecipe()


@dataclass(frozen=True)
class Pi0KIRecipe:
    """Everything a KI-chapter recipe decides. The robot data, steps, robot batch, optimiser and image tokens
    are ``pi0_base``'s (the comparison is at equal data, seed and compute); the rest is the variant's."""

    variant: str = "ki"  # a key of VARIANTS
    recordings: tuple = _BASE.recordings
    steps: int = _BASE.steps
    batch_size: int = _BASE.batch_size
    lr: float = _BASE.lr
    warmup: int = _BASE.warmup
    delta_mask: tuple = _BASE.delta_mask
    grid: int = _BASE.grid
    keypoints: int = _BASE.keypoints
    keypoint_layer: int = _BASE.keypoint_layer
    keypoint_temp: float = _BASE.keypoint_temp
    instruction_keypoints: int = _BASE.instruction_keypoints
    localization_weight: float = _BASE.localization_weight
    # FAST (the KI variants): fitted on the recording's own relative chunks, in degrees
    fast_scale: float = 10.0
    fast_vocab_size: int = 1024
    fast_fit_chunks: int = 20_000  # chunks drawn (seeded) from the recording to fit the tokenizer on
    fast_weight: float = 1.0
    max_fast_tokens: int = 24  # FAST targets cut here (mean ~11 tokens; the longest ~40 would double the step)
    discrete_state_bins: int = 32  # the state in the prefix as words (KI variants), as the paper writes it
    # VQA co-training (variants ki, vqa, ki_no_sg): the VLM's own pretraining questions, fresh scenes
    vqa_scenes: int = 4000
    vqa_batch_size: int = 16
    vqa_weight: float = 1.0
    # Measured along training and at the end (held-out seeds only)
    snapshot_every: int = 1625  # a quarter of the run
    heldout_vqa_scenes: int = 150  # split="heldout", seed 0: the first 150 scenes vlm_base was scored on
    curve_episodes: int = 30  # pick_place episodes per snapshot (layout seeds eval_seed..)
    n_action_steps_candidates: tuple = _BASE.n_action_steps_candidates
    val_seed: int = _BASE.val_seed
    val_episodes: int = _BASE.val_episodes
    eval_seed: int = _BASE.eval_seed
    eval_episodes: int = _BASE.eval_episodes
    latency_runs: int = _BASE.latency_runs
    allow_random_vlm: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; use one of {', '.join(VARIANTS)}")

    @property
    def fast(self) -> bool:
        return self.variant in ("ki", "ki_no_sg")

    @property
    def vqa(self) -> bool:
        return self.variant in ("ki", "vqa", "ki_no_sg")

    def quick(self) -> Pi0KIRecipe:
        """Seconds: two episodes, six steps, a snapshot at step 3, one evaluation episode."""
        return replace(self, recordings=((0, 2, 0.0),), steps=6, batch_size=8, warmup=2, fast_fit_chunks=200,
                       fast_vocab_size=256, vqa_scenes=4, vqa_batch_size=4, snapshot_every=3, heldout_vqa_scenes=2,
                       curve_episodes=1, val_episodes=0, eval_episodes=1, latency_runs=3, allow_random_vlm=True,
                       progress=False)


def fit_fast_tokenizer(data, cfg: Pi0KIRecipe, seed: int):
    """A FAST tokenizer fitted on ``fast_fit_chunks`` of the recording's own chunks, relative as the model
    predicts them (``delta_mask``), in the data's units (degrees; the gripper 0..100)."""
    from vla_course.models.fast import FASTTokenizer
    from vla_course.models.relative import to_relative

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(data), size=min(cfg.fast_fit_chunks, len(data)), replace=False))
    actions, states = [], []
    for part in np.array_split(idx, max(1, len(idx) // 2048)):
        b = data.batch(part)
        actions.append(torch.as_tensor(b["action"], dtype=torch.float32))
        states.append(torch.as_tensor(b["observation.state"], dtype=torch.float32))
    chunks = to_relative(torch.cat(actions), torch.cat(states), cfg.delta_mask).numpy()
    return FASTTokenizer.fit(chunks, scale=cfg.fast_scale, vocab_size=cfg.fast_vocab_size,
                             metadata={"fitted_on": "relative chunks (delta_mask) of the pi0_base recording",
                                       "chunks": int(len(chunks)), "seed": seed})


def freeze_pretrained(vlm, pretrained_names: set[str]) -> int:
    """Freeze every VLM parameter that came from ``vlm_base``; returns how many numbers stay trainable there."""
    trainable = 0
    for name, p in vlm.named_parameters():
        if name in pretrained_names:
            p.requires_grad_(False)
        else:
            trainable += p.numel()
    return trainable


def score_vqa(model, held) -> dict:
    from vla_course.eval_vqa import evaluate_vqa

    s = evaluate_vqa(model.vlm if hasattr(model, "vlm") else model, held)
    return {"overall": round(s["overall"], 4), "per_kind": {k: round(v, 4) for k, v in s["per_kind"].items()}}


def wrong_cube_rate(ev: dict) -> float:
    """How often the gripper held a cube other than the named one at some point of an episode."""
    rows = ev["episodes_detail"]
    return float(np.mean([any(c != r["target"] for c in r["held"]) for r in rows])) if rows else 0.0


def _run(cfg: Pi0KIRecipe, *, seed: int, out_dir: Path, cache=None) -> dict:
    from vla_course.data.chunks import load_chunks
    from vla_course.data.localization import target_pixels
    from vla_course.data.vqa import generate_vqa
    from vla_course.models import count_parameters
    from vla_course.robot import make_robot, observation_to_frame

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    roots = [base_recording(*part, cache=cache, progress=cfg.progress) for part in cfg.recordings]
    vlm, source, added = base_vlm(allow_random=cfg.allow_random_vlm)
    held = generate_vqa(cfg.heldout_vqa_scenes, split="heldout", seed=0, progress=cfg.progress)
    vqa_before = score_vqa(vlm, held)  # vlm_base itself, on the same questions
    data = load_chunks(roots, progress=cfg.progress)
    if cfg.instruction_keypoints and cfg.localization_weight:
        data.target_xy, data.target_valid = target_pixels(data, layout_seeds(cfg.recordings))

    pretrained = {n for n, _ in vlm.named_parameters()}
    add_image_tokens(vlm, cfg, seed)
    kw = {}
    if cfg.fast:
        kw = {"layout": "knowledge_insulation", "discrete_state_bins": cfg.discrete_state_bins,
              "text_weight": cfg.fast_weight, "knowledge_insulation": cfg.variant == "ki",
              "max_fast_tokens": cfg.max_fast_tokens}
    model = build_pi0(vlm, model_stats(data, cfg.delta_mask), delta_mask=cfg.delta_mask,
                      localization_weight=cfg.localization_weight, **kw)
    fast_info = None
    if cfg.fast:
        tok = fit_fast_tokenizer(data, cfg, seed)
        model.set_fast_tokenizer(tok)
        probe = data.batch(np.arange(0, len(data), max(1, len(data) // 2000)))
        full = np.array([len(tok.encode(c)) for c in model.fast_chunks(probe)])
        fast_info = {"vocab_size": tok.vocab_size, "scale": cfg.fast_scale, "probe_chunks": int(len(full)),
                     "tokens_per_chunk_mean": float(full.mean()), "tokens_per_chunk_max": int(full.max()),
                     "max_fast_tokens": cfg.max_fast_tokens,
                     "fraction_cut": float((full > cfg.max_fast_tokens).mean()) if cfg.max_fast_tokens else 0.0}
    trainable_backbone = None
    if cfg.variant == "frozen":
        trainable_backbone = freeze_pretrained(model.vlm, pretrained)

    sources = [Source("robot", data, cfg.batch_size)]
    if cfg.vqa:
        vqa = generate_vqa(cfg.vqa_scenes, split="train", seed=seed, progress=cfg.progress)
        sources.append(Source("vqa", vqa, cfg.vqa_batch_size, weight=cfg.vqa_weight))
    snapshots: dict[int, dict] = {}

    def snapshot(step, _):
        if (step + 1) % cfg.snapshot_every == 0 and step + 1 < cfg.steps:
            snapshots[step + 1] = copy.deepcopy(model.state_dict())

    log = train(model, sources, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup, seed=seed),
                progress=cfg.progress, desc=f"{cfg.variant}: " + VARIANTS[cfg.variant][:40], callback=snapshot)
    train_seconds = log.seconds
    del data

    # Along training: every snapshot (and the final model) on held-out VQA and held-out pick_place layouts.
    final_state = copy.deepcopy(model.state_dict())
    curve = []
    for step in [*sorted(snapshots), cfg.steps]:
        model.load_state_dict(snapshots.get(step, final_state))
        model.eval()
        ev = evaluate_pi0(model, cfg.eval_seed, cfg.curve_episodes, n_action_steps=4, progress=False)
        curve.append({"step": step, "vqa": score_vqa(model, held)["overall"], "success_rate": ev["success_rate"],
                      "wrong_cube_rate": wrong_cube_rate(ev), "episodes": cfg.curve_episodes})
    model.load_state_dict(final_state)
    nas, validation = choose_n_action_steps(model, cfg.val_seed, cfg.val_episodes, cfg.n_action_steps_candidates,
                                            progress=cfg.progress)
    model.config.n_action_steps = nas
    ev = evaluate_pi0(model, cfg.eval_seed, cfg.eval_episodes, progress=cfg.progress)
    vqa_after = score_vqa(model, held)
    with make_robot("sim", seed=cfg.eval_seed) as robot:
        frame0 = observation_to_frame(robot.get_observation(), robot.instruction)
    lat = chunk_latency_ms(model, frame0, runs=cfg.latency_runs)
    for p in model.parameters():
        p.requires_grad_(True)
    model.save_pretrained(out_dir)
    sizes = [dataset_size(r) for r in roots]
    return {
        "data": {"dataset": [relative_to_repo(r) for r in roots], "episodes": sum(e for e, _ in sizes),
                 "frames": sum(f for _, f in sizes), "task": "pick_place (3-5 cubes, random target)",
                 "vqa_cotraining": ({"scenes": cfg.vqa_scenes, "split": "train", "seed": seed,
                                     "batch_size": cfg.vqa_batch_size} if cfg.vqa else None),
                 "same_as": "pi0_base's recordings"},
        "metrics": {"variant": cfg.variant, "what": VARIANTS[cfg.variant],
                    "success_rate": ev["success_rate"], "successes": ev["successes"],
                    "eval_episodes": cfg.eval_episodes,
                    "eval_seeds": f"{cfg.eval_seed}..{cfg.eval_seed + cfg.eval_episodes - 1}",
                    "vqa_heldout": vqa_after, "vqa_vlm_base": vqa_before,
                    "vqa_retained": round(vqa_after["overall"] / max(vqa_before["overall"], 1e-9), 4),
                    "wrong_cube_rate": wrong_cube_rate(ev),
                    "vqa_questions": len(held), "ms_per_chunk": lat, "curve": curve,
                    "final_loss": log.final(), "parameters": count_parameters(model)},
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "training": {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "backbone_init": source,
                     "words_added": added, "fast": fast_info, "trainable_backbone_numbers": trainable_backbone,
                     "loss_every_step": log.loss[::10],
                     "terms_every_step": {k: v[::10] for k, v in log.losses.items()}},
        "n_action_steps": nas,
        "n_action_steps_validation": validation,
        "delta_mask": list(cfg.delta_mask),
        "evaluation": summary(ev),
    }


LETTERS = {"vqa": "b", "frozen": "c", "ki": "d", "ki_no_sg": "e"}  # the recipe letters; (a) is pi0_base


def _register(name: str, variant: str):
    @recipe(name, f"({LETTERS[variant]}) {VARIANTS[variant]}; pi0_base's data, steps and batch; VQA and success "
                  "along training", config=partial(Pi0KIRecipe, variant=variant))
    def fn(cfg: Pi0KIRecipe, *, seed: int, out_dir: Path, cache=None) -> dict:
        if cfg.variant != variant:
            raise ValueError(f"recipe {name!r} is variant {variant!r}, got a config of variant {cfg.variant!r}")
        return _run(cfg, seed=seed, out_dir=out_dir, cache=cache)
    return fn


pi0_ki = _register("pi0_ki", "ki")
pi0_vqa = _register("pi0_vqa", "vqa")
pi0_frozen = _register("pi0_frozen", "frozen")
pi0_ki_no_sg = _register("pi0_ki_no_sg", "ki_no_sg")
