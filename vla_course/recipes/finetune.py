"""``pi0_finetune``: teach ``pi0_base`` a skill it does not have, from a few recorded episodes.

The third stage of the blog's recipe ("record some episodes of your SO-100 and fine-tune the base model for
your task"). The new skill is ``hold_up`` ("hold the red cube up", :class:`~vla_course.sim.tasks.HoldUp`):
grasp the named cube and lift it high instead of putting it in the bin. The base policy cannot do it: its
vocabulary has no "hold", and it only ever carried cubes at bin height. The tables are the base's own
(the same layout generator), so what fine-tuning must add is a new word and a new ending::

    vla-course record --task hold_up --episodes 50 ...   # what the recipe records (record_dataset, same path)
    vla-course train pi0_finetune                       # this recipe

Steps:

1. record ``recordings`` (<= 50 episodes) of the scripted expert on the new task, some with a detour (the
   expert hovers beside the cube, then corrects), and replay ``base_recordings`` of the base's own demonstrations
   (pick_place on layout seeds 0.. and, with detours, 1000..: episodes of ``pi0_base``'s own data). All are
   cached (``vla_course.data.cache``) and get localisation labels from the sim, as in pre-training;
2. measure ``pi0_base`` as shipped on the new task and on pick_place, on the same held-out seeds;
3. grow the vocabulary (``tokenizer.add_words`` + ``resize_token_embeddings``: old ids and rows stay, the new
   words get fresh rows);
4. fine-tune with the one loop on a *mixture*: each step one batch of the new task and one of the base
   task (without the base data, fine-tuning on a narrow set-up erodes the base skill; the earlier version of
   this recipe went 18/20 -> 12/20 that way). The base's normalisation statistics and relative actions stay:
   they are in the model's config, and changing them would move every input the pretrained weights read;
5. measure the fine-tuned model on both tasks, on the same seeds, and save.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from vla_course.data.cache import recorded_dataset, relative_to_repo
from vla_course.train import recipe
from vla_course.training import Source, TrainConfig, train
from vla_course.training.evaluate import evaluate_pi0

BASE_TASK = "pick_place"


@dataclass(frozen=True)
class Pi0FinetuneRecipe:
    """Everything ``pi0_finetune`` decides. Layout seeds: new-task episodes 20000.., base replay 0.. and 1000.. (the
    base's own training seeds), held-out evaluation 10000.. (never recorded, the base recipe's test seeds)."""

    task: str = "hold_up"  # the new skill: a name in vla_course.sim.TASKS
    task_kwargs: tuple = ()
    # The new task's recordings (the budget: <= 50 episodes in all), in parts (first layout seed, episodes, expert
    # detour in metres): 35 plain episodes and 15 in which the expert first hovers beside the cube and corrects.
    recordings: tuple = ((20_000, 35, 0.0), (20_050, 15, 0.08))
    # Replayed base demonstrations mixed in, in parts (first layout seed, episodes, expert detour in metres), like
    # Pi0BaseRecipe.recordings and drawn from the same seeds: 200 plain episodes and 60 with detours (the base data's
    # corrections: without them the fine-tuned policy missed more grasps). () fine-tunes on the new task only.
    base_recordings: tuple = ((0, 50, 0.0), (50, 150, 0.0), (1000, 60, 0.08))
    init: str = "pi0_base"  # the checkpoint to start from (in the same checkpoint folder)
    steps: int = 1200  # chosen on validation seeds 5000.. (never the test seeds): fewer steps learnt less of the new
    # skill, more steps cost more of the old one (~6-8 CPU-minutes on one thread)
    batch_size: int = 32  # new-task rows per step ...
    base_batch_size: int = 32  # ... and base rows per step
    lr: float = 1e-4
    warmup: int = 50
    localization_weight: float = 0.5  # keep pre-training's localisation loss on (labels from the sim)
    eval_seed: int = 10_000
    eval_episodes: int = 50  # held-out layouts 10000..10049 (pi0_base's test seeds) ...
    rollouts_per_layout: int = 2  # ... each tried twice, every rollout with its own noise (see success_on)
    progress: bool = True

    def quick(self) -> Pi0FinetuneRecipe:
        """Seconds, not minutes: two + one episodes, four steps, one evaluation episode per task and model."""
        return replace(self, recordings=((20_000, 2, 0.0),), base_recordings=((0, 1, 0.0),), steps=4, batch_size=8,
                       base_batch_size=8, eval_episodes=1, rollouts_per_layout=1, progress=False)


def grow_vocabulary(vlm, texts: list[str]) -> list[str]:
    """Add every word of ``texts`` the tokenizer lacks and give each a fresh embedding row; returns the new
    words. Old ids (and their rows) never change, so the pretrained weights stay valid."""
    from vla_course.models.tokenizer import split_words

    missing = sorted({w for t in texts for w in split_words(t) if w not in vlm.tokenizer})
    if missing:
        vlm.tokenizer.add_words(missing)
        vlm.resize_token_embeddings()
    return missing


def recording(task: str, seed: int, episodes: int, detour: float = 0.0, task_kwargs: dict | None = None, cache=None,
              progress: bool = True) -> Path:
    """``episodes`` scripted-expert episodes of ``task`` on layout seeds ``seed..``, recorded once and cached: the
    code path of ``vla-course record --task <task>`` (``record_dataset``); ``detour`` as in ``ScriptedExpert``."""
    kind = f"detour{round(detour * 100)}cm" if detour else "expert"
    name = f"{task}_{kind}_s{seed}_n{episodes}"
    return recorded_dataset(name, episodes, seed=seed, task=task, task_kwargs=task_kwargs,
                            policy_kwargs={"detour": detour} if detour else None, cache=cache, progress=progress)


def robot_chunks(root: Path, task: str, seed0: int, task_kwargs: dict, progress: bool):
    """A recording as (observation, chunk) pairs, with the named cube's pixel per frame (localisation labels:
    episode ``e`` was recorded on layout seed ``seed0 + e``)."""
    from vla_course.data.chunks import load_chunks
    from vla_course.data.localization import target_pixels

    data = load_chunks(root, progress=progress)
    seeds = {e: seed0 + e for e in range(data.num_episodes)}
    data.target_xy, data.target_valid = target_pixels(data, seeds, task=task, task_kwargs=task_kwargs)
    return data


def robot_chunks_of(parts: list, progress: bool):
    """Several recordings as one ChunkDataset, loaded once (pixels are gigabytes: loading each part and
    concatenating would hold them twice), each part labelled with its named cube's pixels as
    :func:`robot_chunks` does. ``parts``: ``(root, task, first layout seed, task_kwargs)`` per recording."""
    import torch

    from vla_course.data.cache import dataset_size
    from vla_course.data.chunks import load_chunks
    from vla_course.data.localization import target_pixels
    from vla_course.data.views import Subset

    data = load_chunks([p[0] for p in parts], progress=progress)
    xy, valid, row, first_episode = [], [], 0, 0
    for root, task, seed0, task_kwargs in parts:
        episodes, frames = dataset_size(root)
        part = Subset(data, torch.arange(row, row + frames))  # episodes renumbered from first_episode
        seeds = {first_episode + e: seed0 + e for e in range(episodes)}
        x, v = target_pixels(part, seeds, task=task, task_kwargs=task_kwargs)
        xy.append(x)
        valid.append(v)
        row, first_episode = row + frames, first_episode + episodes
    if row != len(data):
        raise RuntimeError(f"the recordings hold {row} frames, the loaded data {len(data)}")
    data.target_xy, data.target_valid = torch.cat(xy), torch.cat(valid)
    return data


def success_on(model, cfg: Pi0FinetuneRecipe, task: str, task_kwargs: dict | None = None) -> dict:
    """Success of ``model`` on ``task``: every held-out layout ``eval_seed..`` tried ``rollouts_per_layout`` times,
    each rollout with its own noise stream: layout ``s``'s rollout ``k`` has policy seed ``s + k * 10**6``
    (``evaluate_pi0(noise_offset=...)``), so the rate averages over noise as well as over tables."""
    detail = []
    for k in range(cfg.rollouts_per_layout):
        ev = evaluate_pi0(model, cfg.eval_seed, cfg.eval_episodes, task=task, task_kwargs=task_kwargs, progress=False,
                          noise_offset=k * 10**6)
        detail += ev["episodes_detail"]
    successes = sum(r["success"] for r in detail)
    return {"task": task, "successes": successes, "episodes": len(detail), "success_rate": successes / len(detail),
            "episodes_detail": detail}


def _rate(ev: dict) -> dict:
    return {k: ev[k] for k in ("success_rate", "successes", "episodes")}


@recipe("pi0_finetune", "pi0_base fine-tuned on <= 50 recorded episodes of a new skill (hold_up: 'hold the red "
                        "cube up') mixed with base demonstrations; both tasks before/after on the same held-out seeds",
        config=Pi0FinetuneRecipe)
def pi0_finetune(cfg: Pi0FinetuneRecipe, *, seed: int, out_dir: Path, cache=None) -> dict:
    from vla_course.checkpoints import load_pretrained
    from vla_course.constants import COLORS
    from vla_course.data.chunks import concat_chunks
    from vla_course.recipes.pi0 import base_recording
    from vla_course.sim import TASKS

    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; register it in vla_course/sim/tasks.py "
                         f"(available: {', '.join(TASKS)})")
    if cfg.task == BASE_TASK:
        raise ValueError(f"task {BASE_TASK!r} is the base skill; pick a new one, e.g. 'hold_up'")
    torch.set_num_threads(1)
    task_kwargs = dict(cfg.task_kwargs)

    # 1. the recordings: the new task (the user's own episodes) and a replay of the base's demonstrations
    t0 = time.perf_counter()
    roots = [recording(cfg.task, *part, task_kwargs=task_kwargs, cache=cache, progress=cfg.progress)
             for part in cfg.recordings]
    new = concat_chunks([robot_chunks(r, cfg.task, part[0], task_kwargs, cfg.progress)
                         for r, part in zip(roots, cfg.recordings)])
    sources = [Source(cfg.task, new, cfg.batch_size)]
    base_roots = [base_recording(*part, cache=cache, progress=cfg.progress) for part in cfg.base_recordings]
    if base_roots:
        base = concat_chunks([robot_chunks(r, BASE_TASK, part[0], {}, cfg.progress)
                              for r, part in zip(base_roots, cfg.base_recordings)])
        sources.append(Source(BASE_TASK, base, cfg.base_batch_size))
    data_seconds = time.perf_counter() - t0

    # 2. the base policy, as shipped, on both tasks and the same seeds
    model = load_pretrained(cfg.init, kind="Pi0", root=out_dir.parent)
    t0 = time.perf_counter()
    before = {cfg.task: success_on(model, cfg, cfg.task, task_kwargs), BASE_TASK: success_on(model, cfg, BASE_TASK)}

    # 3. the new words, 4. fine-tune on the mixture
    instructions = [TASKS[cfg.task](**task_kwargs).instruction([c]) for c in COLORS]
    added = grow_vocabulary(model.vlm, instructions)
    model.config.localization_weight = cfg.localization_weight
    cpu0 = time.process_time()  # CPU time of this process: the cost "on one core", whatever else the machine runs
    log = train(model, sources, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup, seed=seed),
                progress=cfg.progress, desc=f"fine-tune on {cfg.task}")
    train_cpu_seconds = time.process_time() - cpu0

    # 5. the fine-tuned policy on both tasks, the same seeds
    after = {cfg.task: success_on(model, cfg, cfg.task, task_kwargs), BASE_TASK: success_on(model, cfg, BASE_TASK)}
    eval_seconds = time.perf_counter() - t0 - log.seconds
    model.save_pretrained(out_dir)
    seeds = f"{cfg.eval_seed}..{cfg.eval_seed + cfg.eval_episodes - 1}"
    new_task = {"before": _rate(before[cfg.task]), "after": _rate(after[cfg.task])}
    base_task = {"before": _rate(before[BASE_TASK]), "after": _rate(after[BASE_TASK])}
    return {
        "finetune_task": cfg.task,
        "data": {"dataset": [relative_to_repo(r) for r in roots], "task": cfg.task, "task_kwargs": task_kwargs,
                 "instruction_example": instructions[0], "episodes": new.num_episodes, "frames": len(new),
                 "parts": [{"layout_seeds": f"{s0}..{s0 + n - 1}", "detour_m": d} for s0, n, d in cfg.recordings],
                 "base_mix": (None if not base_roots else
                              {"dataset": [relative_to_repo(r) for r in base_roots], "task": BASE_TASK,
                               "episodes": base.num_episodes, "frames": len(base),
                               "parts": [{"layout_seeds": f"{s0}..{s0 + n - 1}", "detour_m": d}
                                         for s0, n, d in cfg.base_recordings]}),
                 "record_and_load_seconds": data_seconds, "init": cfg.init},
        "metrics": {
            "new_task": new_task, "base_task": base_task, "eval_seeds": seeds,
            "rollouts_per_layout": cfg.rollouts_per_layout, "policy_seeds": "layout seed + k * 10**6 for rollout k",
            "eval_episodes": cfg.eval_episodes * cfg.rollouts_per_layout,  # rollouts per (model, task)
            "pick_place_drop_points": 100 * (base_task["before"]["success_rate"] - base_task["after"]["success_rate"]),
            # the names the first version of this recipe used (notebook 04 reads them)
            "before": new_task["before"], "after": new_task["after"],
            "general": {**base_task["after"], "eval_seeds": seeds},
            "final_loss": log.final()},
        "train_seconds": log.seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "eval_seconds": eval_seconds,
        "training": {"steps": cfg.steps, "batch_size": cfg.batch_size, "base_batch_size": cfg.base_batch_size,
                     "lr": cfg.lr, "warmup": cfg.warmup, "words_added": added,
                     "localization_weight": cfg.localization_weight,
                     "loss_every_step": log.loss[::10],  # every 10th step
                     "new_task_flow_every_step": log.losses.get(f"{cfg.task}.flow", [])[::10]},
        "n_action_steps": model.config.n_action_steps,
        "delta_mask": list(model.config.delta_mask or ()),
        "evaluation": {"before": before, "after": after},
    }
