"""RECAP (pi*0.6) in miniature: learn from the policy's own experience with a value function (notebook 08).

The loop, on pick_place with ``pi0_base`` as the base policy (about 75-80% here; its failures are missed
grasps, regrasp loops and timeouts, so there is room)::

    1. data     demonstrations (pi0_base's own recordings, plus the expert's fumbles and drops, with and
                without recovery), autonomous rollouts of the base policy labelled success/failure by the sim
                (pi*0.6 labels by hand), and corrections: the scripted expert takes over when a stated rule
                says the policy strayed (``CorrectionPolicy``: no grasp by step N, wrong cube, dropped cube)
    2. value    ``value_so100``: returns (-1 per step, a failure penalty, normalised into [-1, 0]) and a
                distributional value function on the VLM (``models.value``), cross-entropy on binned returns
    3. advantage  A_t = r_t + ... + r_{t+N-1} + V(o_{t+N}) - V(o_t) (the post-training form), the top 30%
                "positive", corrections always positive, "advantage: positive/negative" after the instruction,
                dropped 30% of the time
    4. policy   ``recap``: pi0_base fine-tuned on all the data with those prompts; asked for "positive"

Baselines at the same data and compute (6000 steps x 32, the same start): ``recap_bc_demos`` (demonstrations
only), ``recap_bc_all`` (all the data, plain prompts), ``recap_filtered`` (demonstrations, successful rollouts
and the corrections' expert frames). Every recording is cached (``vla_course.data.cache``)::

    vla-course train value_so100 && vla-course train recap
    vla-course train recap_bc_all     # also recap_bc_demos, recap_filtered
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vla_course.data.cache import cache_dir, dataset_size, recorded_dataset, relative_to_repo
from vla_course.recap.value import spearman
from vla_course.train import recipe
from vla_course.training import Source, TrainConfig, train
from vla_course.training.evaluate import evaluate_pi0

VARIANTS = {
    "value": "the value function: normalised returns, 201 bins, on vlm_base",
    "recap": "advantage-conditioned pi0 ('advantage: positive/negative' from value_so100), asked for positive",
    "bc_all": "behaviour cloning on all the same data (demonstrations, rollouts, corrections), plain prompts",
    "bc_demos": "behaviour cloning on the demonstrations only",
    "filtered": "filtered behaviour cloning: successful demonstrations and rollouts, the corrections' expert frames",
}
TASK = "pick_place"


@dataclass(frozen=True)
class RecapRecipe:
    """Everything the RECAP recipes decide. Layout seeds: demonstrations pi0_base's 0.. and 43000.. (mistakes),
    rollouts 41000.., corrections 42000.., value hold-out 44000.., evaluation 10000.. (never recorded)."""

    variant: str = "recap"
    base: str = "pi0_base"
    demos: tuple = ((0, 150, 0.0),)  # pi0_base's own demonstrations (seed, episodes, detour)
    mistake_demos: tuple = (("fumble", True, 43_000, 20), ("drop", True, 43_100, 20), ("drop", False, 43_200, 20))
    rollouts: tuple = (41_000, 200)  # the base policy on its own (first seed, episodes)
    corrections: tuple = (42_000, 100)  # the base policy, the expert taking over by rule
    no_grasp_by: int = 120  # the correction rule's step limit (4 s)
    value_holdout: tuple = (44_000, 40)  # base-policy rollouts the value function never trains on
    max_steps: int = 360  # pick_place's episode limit: the returns' normaliser
    # value function
    value_bins: int = 201
    value_steps: int = 2000
    value_batch_size: int = 32
    value_lr: float = 3e-4
    # the policies (every variant: the same start, steps and batch). 6000 steps x 32 is 2.2 passes over the data;
    # at the first budget, 1500 (0.56 passes), recap and BC on all of it came out level (notebook 08)
    steps: int = 6000
    batch_size: int = 32
    lr: float = 1e-4
    warmup: int = 50
    n_step: int = 30  # A_t's horizon: one second of control
    positive_fraction: float = 0.3
    dropout: float = 0.3
    sft_positive: bool = True  # the clean demonstrations (pi0_base's SFT data) always positive, as pi*0.6 does
    guidance: float | None = None  # evaluate recap with classifier-free guidance of this beta
    eval_seed: int = 10_000
    eval_episodes: int = 50
    progress: bool = True

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; use one of {', '.join(VARIANTS)}")

    def quick(self) -> RecapRecipe:
        return replace(self, demos=((0, 1, 0.0),), mistake_demos=(("drop", False, 43_200, 1),), rollouts=(41_000, 1),
                       corrections=(42_000, 1), value_holdout=(44_000, 1), value_bins=11, value_steps=3,
                       value_batch_size=4, steps=3, batch_size=4, warmup=1, eval_episodes=1, progress=False)


# ---- data --------------------------------------------------------------------------------
def policy_recording(name: str, model, seed: int, episodes: int, corrections: bool, cfg: RecapRecipe, cache=None):
    """``model`` acting on layout seeds ``seed..`` (each episode its own noise), alone or with rule-based
    corrections, recorded once (every frame, with ``expert_in_control``) and cached."""
    from vla_course.data import record_dataset
    from vla_course.models import Pi0Policy
    from vla_course.policies import CorrectionPolicy

    root = cache_dir(cache) / "datasets" / name
    info = root / "meta" / "info.json"
    if info.exists():
        import json

        if json.loads(info.read_text()).get("total_episodes") == episodes:
            return root

    def factory(robot, episode_seed):
        learner = Pi0Policy(model, seed=episode_seed)
        return CorrectionPolicy(robot, learner, cfg.no_grasp_by, seed=episode_seed) if corrections else learner

    record_dataset(root, episodes=episodes, seed=seed, policy=factory, overwrite=True, progress=cfg.progress)
    return root


def recap_data(cfg: RecapRecipe, cache=None, root=None) -> dict:
    """The recordings every RECAP recipe shares, recorded once, then read from the cache. ``"all"``: the
    demonstrations, rollouts and corrections loaded once into one ChunkDataset (pixels are gigabytes: no
    second copy); ``"data"``: each part (``demos``, ``rollouts``, ``corrections``) as a view of it
    (:class:`~vla_course.data.views.Subset`) and the value hold-out; ``"bounds"``: the parts' first rows.
    The base policy is read from ``root`` (the checkpoint folder beside the output; None: data/checkpoints)."""
    from vla_course.checkpoints import load_pretrained
    from vla_course.data.chunks import load_chunks
    from vla_course.data.views import Subset
    from vla_course.recipes.finetune import robot_chunks_of
    from vla_course.recipes.pi0 import base_recording

    base = load_pretrained(cfg.base, kind="Pi0", root=root).eval()
    roots = {"demos": [base_recording(*p, cache=cache, progress=cfg.progress) for p in cfg.demos]}
    for mistake, recover, seed, n in cfg.mistake_demos:
        kind = f"{mistake}{'_recover' if recover else '_giveup'}"
        roots["demos"].append(recorded_dataset(f"{TASK}_{kind}_s{seed}_n{n}", n, seed=seed, cache=cache,
                                               policy_kwargs={"mistake": mistake, "recover": recover},
                                               progress=cfg.progress))
    for part, (seed, n), corr in (("rollouts", cfg.rollouts, False), ("corrections", cfg.corrections, True),
                                  ("holdout", cfg.value_holdout, False)):
        name = f"recap_{part}_{cfg.base}_s{seed}_n{n}"
        roots[part] = [policy_recording(name, base, seed, n, corr, cfg, cache)]
    parts = ("demos", "rollouts", "corrections")
    # every part labelled with its named cube's pixels, as pi0_base trained (its localization loss): without
    # them the fine-tune silently drops that loss, and the first full run of `recap` fell to 32% (pi0_base 80%)
    seeds = {"demos": [p[0] for p in cfg.demos] + [m[2] for m in cfg.mistake_demos],
             "rollouts": [cfg.rollouts[0]], "corrections": [cfg.corrections[0]]}
    everything = robot_chunks_of([(r, TASK, s0, {}) for k in parts for r, s0 in zip(roots[k], seeds[k], strict=True)],
                                 cfg.progress)
    frames = [sum(dataset_size(r)[1] for r in roots[k]) for k in parts]
    bounds = np.cumsum([0, *frames])
    if bounds[-1] != len(everything):
        raise RuntimeError(f"the recordings hold {bounds[-1]} frames, the loaded data {len(everything)}")
    data = {k: Subset(everything, torch.arange(bounds[i], bounds[i + 1])) for i, k in enumerate(parts)}
    data["holdout"] = load_chunks(roots["holdout"], progress=cfg.progress)
    return {"data": data, "all": everything, "bounds": bounds, "roots": roots, "base": base}


def returns_of(d, cfg: RecapRecipe) -> torch.Tensor:
    from vla_course.recap import mc_returns

    return mc_returns(d.labels["steps_to_go"], d.labels["episode_success"], cfg.max_steps)


def _sizes(d) -> dict:
    succ = d.labels["episode_success"]
    ep = d.episode_index
    first = torch.ones(len(ep), dtype=torch.bool)
    first[1:] = ep[1:] != ep[:-1]
    return {"episodes": int(first.sum()), "frames": len(d), "successful_episodes": int(succ[first].sum()),
            "expert_frames": int(d.labels["expert_in_control"].sum())}


# ---- the value function ----------------------------------------------------------------
def _train_value(cfg: RecapRecipe, shared: dict, seed: int, out_dir: Path) -> dict:
    from vla_course.data.views import WithColumns
    from vla_course.models import Normalizer
    from vla_course.models.value import ValueConfig, ValueFunction
    from vla_course.recipes.pi0 import base_vlm

    d = shared["data"]
    train_data = shared["all"]  # demonstrations, rollouts and corrections
    vlm, source, _ = base_vlm()
    model = ValueFunction(vlm, ValueConfig(bins=cfg.value_bins))
    model.set_normalization_stats({"observation.state": Normalizer.compute_stats(train_data.state)})
    src = Source("value", WithColumns(train_data, **{"return": returns_of(train_data, cfg)}), cfg.value_batch_size)
    log = train(model, [src], TrainConfig(steps=cfg.value_steps, lr=cfg.value_lr, warmup=cfg.warmup, seed=seed),
                progress=cfg.progress, desc="value function")
    model.eval()
    hold = d["holdout"]
    v = predict_values(model, hold)
    g = returns_of(hold, cfg).numpy()
    ok = hold.labels["episode_success"].numpy()
    model.save_pretrained(out_dir)
    return {"metrics": {"spearman_successful_heldout": spearman(v[ok], g[ok]) if ok.any() else None,
                        "spearman_all_heldout": spearman(v, g),
                        "mean_abs_error_heldout": float(np.abs(v - g).mean()), "final_loss": log.final()},
            "train_seconds": log.seconds, "backbone_init": source,
            "data_sizes": {k: _sizes(x) for k, x in d.items()},
            "loss_every_step": log.loss[::10]}


@torch.inference_mode()
def predict_values(model, data, batch_size: int = 128) -> np.ndarray:
    """V of every frame of a ChunkDataset."""
    out = [model.values(data.batch(torch.arange(i, min(i + batch_size, len(data))))).numpy()
           for i in range(0, len(data), batch_size)]
    return np.concatenate(out)


# ---- the policies --------------------------------------------------------------------------
def policy_sources(cfg: RecapRecipe, shared: dict, out_dir: Path) -> tuple[list, dict]:
    """The training source of each variant, and what was measured making it (advantages for recap)."""
    from vla_course.checkpoints import load_pretrained
    from vla_course.data.views import Subset, WithColumns
    from vla_course.recap.advantage import condition_on_advantage

    d, everything, bounds = shared["data"], shared["all"], shared["bounds"]
    if cfg.variant == "bc_demos":
        return [Source("demos", d["demos"], cfg.batch_size)], {}
    if cfg.variant == "bc_all":
        return [Source("all", everything, cfg.batch_size)], {}
    lab = everything.labels
    is_correction = torch.zeros(len(everything), dtype=torch.bool)  # the corrections' expert frames
    is_correction[bounds[2]:bounds[3]] = lab["expert_in_control"][bounds[2]:bounds[3]].bool()
    if cfg.variant == "filtered":
        keep = filtered_rows(lab["episode_success"], bounds, is_correction)
        sizes = {k: len(v) for k, v in keep.items()}
        return [Source(k, Subset(everything, v), max(1, round(cfg.batch_size * len(v) / sum(sizes.values()))))
                for k, v in keep.items() if len(v)], {"filtered_frames": sizes}
    # recap: advantages from the value function. The expert's mistakes and the rollouts get their label from
    # A_t; the corrections' expert frames, and with sft_positive the clean demonstrations (the SFT data), are
    # positive by rule (pi*0.6: "corrections and the SFT stage are always positive").
    forced = is_correction.clone()
    clean = sum(dataset_size(r)[1] for r in shared["roots"]["demos"][:len(cfg.demos)])
    if cfg.sft_positive:
        forced[bounds[0]:bounds[0] + clean] = True
    value = load_pretrained("value_so100", kind="ValueFunction", root=out_dir.parent).eval()
    pos, thr = recap_labels(lab, torch.as_tensor(predict_values(value, everything)), forced, cfg)
    src = Source("recap", WithColumns(everything, advantage_positive=pos), cfg.batch_size,
                 transform=condition_on_advantage(cfg.dropout))
    share = {k: float(pos[bounds[i]:bounds[i + 1]].float().mean()) for i, k in enumerate(("demos", "rollouts",
                                                                                           "corrections"))}
    return [src], {"advantage": {"n_step": cfg.n_step, "threshold": thr, "positive_fraction": float(pos.float().mean()),
                                 "positive_by_part": share, "forced_positive_frames": int(forced.sum()),
                                 "correction_frames": int(is_correction.sum()), "sft_positive": cfg.sft_positive,
                                 "dropout": cfg.dropout}}


def filtered_rows(episode_success, bounds, is_correction) -> dict:
    """Filtered BC's rows of the joined data (parts demos, rollouts, corrections from ``bounds``): the successful
    demonstrations (a give-up demonstration fails), the successful rollouts and the corrections' expert frames."""
    success = torch.as_tensor(episode_success, dtype=torch.bool)
    b = [int(x) for x in bounds]
    return {"demos": b[0] + torch.nonzero(success[b[0]:b[1]]).flatten(),
            "successes": b[1] + torch.nonzero(success[b[1]:b[2]]).flatten(),
            "corrections": torch.nonzero(torch.as_tensor(is_correction, dtype=torch.bool)).flatten()}


def recap_labels(labels: dict, values, is_correction, cfg: RecapRecipe) -> tuple:
    """``(positive (N,) bool, threshold)``: N-step advantages A_t from the values V(o_t) of every frame, the top
    ``positive_fraction`` of the frames that are *not* forced positive, and every forced frame (``is_correction``:
    the corrections' expert frames, and the SFT demonstrations when the recipe says so) positive by rule."""
    from vla_course.recap.advantage import (advantage_labels, advantage_threshold, n_step_advantages,
                                            normalised_rewards)

    is_correction = torch.as_tensor(is_correction, dtype=torch.bool)
    r = normalised_rewards(labels["steps_to_go"], labels["episode_success"], cfg.max_steps)
    adv = n_step_advantages(r, torch.as_tensor(values, dtype=torch.float32), labels["steps_to_go"], cfg.n_step)
    thr = advantage_threshold(adv[~is_correction], cfg.positive_fraction)
    return advantage_labels(adv, thr, is_correction), thr


def failure_modes(ev: dict) -> dict:
    """Each failed episode by kind: never held a cube, held the wrong cube, held the named one and still failed
    (dropped it, lost it, or ran out of time)."""
    out = {"never_grasped": 0, "wrong_cube": 0, "held_but_failed": 0}
    for r in ev["episodes_detail"]:
        if r["success"]:
            continue
        if not r["held"]:
            out["never_grasped"] += 1
        elif any(c != r["target"] for c in r["held"]):
            out["wrong_cube"] += 1
        else:
            out["held_but_failed"] += 1
    return out


def outcome(ev: dict, fps: int = 30) -> dict:
    rows = ev["episodes_detail"]
    ok = [r["steps"] for r in rows if r["success"]]
    hours = sum(r["steps"] for r in rows) / fps / 3600
    return {"success_rate": ev["success_rate"], "successes": ev["successes"], "episodes": ev["episodes"],
            "mean_steps_to_finish": float(np.mean(ok)) if ok else None,
            "mean_steps": float(np.mean([r["steps"] for r in rows])),
            "throughput_per_hour": ev["successes"] / hours if hours else 0.0, "failure_modes": failure_modes(ev)}


def _train_policy(cfg: RecapRecipe, shared: dict, seed: int, out_dir: Path) -> dict:
    import copy

    from vla_course.recipes.finetune import grow_vocabulary

    sources, made = policy_sources(cfg, shared, out_dir)
    model = copy.deepcopy(shared["base"]).train()
    added = grow_vocabulary(model.vlm, ["advantage: positive advantage: negative"]) if cfg.variant == "recap" else []
    log = train(model, sources, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup, seed=seed),
                progress=cfg.progress, desc=cfg.variant)
    model.eval()
    t0 = time.perf_counter()
    if cfg.variant == "recap":
        from vla_course.models import Pi0Policy
        from vla_course.recap.advantage import POSITIVE
        from vla_course.training.evaluate import evaluate_policy

        pol = Pi0Policy(model, seed=0, condition=POSITIVE, guidance=cfg.guidance)
        ev = evaluate_policy(pol, cfg.eval_seed, cfg.eval_episodes, progress=cfg.progress, noise_offset=0)
    else:
        ev = evaluate_pi0(model, cfg.eval_seed, cfg.eval_episodes, progress=cfg.progress, noise_offset=0)
    model.save_pretrained(out_dir)
    return {"metrics": {**outcome(ev), "variant": cfg.variant, "what": VARIANTS[cfg.variant],
                        "eval_seeds": f"{cfg.eval_seed}..{cfg.eval_seed + cfg.eval_episodes - 1}",
                        "eval_noise": "policy seed = layout seed (evaluate_policy noise_offset=0)",
                        "final_loss": log.final(), **made},
            "train_seconds": log.seconds, "eval_seconds": time.perf_counter() - t0, "words_added": added,
            "data_sizes": {k: _sizes(x) for k, x in shared["data"].items()},
            "loss_every_step": log.loss[::10], "terms_every_step": {k: v[::10] for k, v in log.losses.items()},
            "evaluation": {k: v for k, v in ev.items() if k != "videos"}}


def _run(cfg: RecapRecipe, *, seed: int, out_dir: Path, cache=None) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    shared = recap_data(cfg, cache, root=out_dir.parent)
    data_seconds = time.perf_counter() - t0
    out = _train_value(cfg, shared, seed, out_dir) if cfg.variant == "value" else _train_policy(cfg, shared, seed,
                                                                                                 out_dir)
    out["data"] = {"parts": {k: [relative_to_repo(r) for r in v] for k, v in shared["roots"].items()},
                   "base_policy": cfg.base, "task": TASK, "record_and_load_seconds": data_seconds,
                   "labels": "success/failure from the sim (pi*0.6 labels by hand)",
                   "corrections": f"CorrectionPolicy: no grasp by step {cfg.no_grasp_by}, wrong cube, dropped cube"}
    out["total_seconds"] = time.perf_counter() - t0
    return out


def _register(name: str, variant: str):
    @recipe(name, f"RECAP: {VARIANTS[variant]}", config=partial(RecapRecipe, variant=variant))
    def fn(cfg: RecapRecipe, *, seed: int, out_dir: Path, cache=None) -> dict:
        if cfg.variant != variant:
            raise ValueError(f"recipe {name!r} is variant {variant!r}, got a config of variant {cfg.variant!r}")
        return _run(cfg, seed=seed, out_dir=out_dir, cache=cache)
    return fn


value_so100 = _register("value_so100", "value")
recap = _register("recap", "recap")
recap_bc_all = _register("recap_bc_all", "bc_all")
recap_bc_demos = _register("recap_bc_demos", "bc_demos")
recap_filtered = _register("recap_filtered", "filtered")
