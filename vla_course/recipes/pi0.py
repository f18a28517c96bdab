"""pi0 in miniature, trained on expert demonstrations in the SO-100 sim: two recipes, each a small config.

In the order a real SO-100 user would run them::

    vla-course train pi0_base       # the "pre-trained" policy: varied scenes, every colour as target
    vla-course train pi0_finetune   # start from pi0_base, adapt to a small set of "your own" episodes

``pi0_base`` (:class:`Pi0BaseRecipe`)
    1. records (or reuses, from the cache's ``datasets/``) LeRobotDatasets of the scripted expert
       (``recordings``): 3-5 cubes, random colours, random target, so the instruction must pick the target
       among distractors; some episodes with a *detour* (hover beside the cube, then correct), so the data
       show how to recover from an off-target reach;
    2. loads them into memory as (observation, action chunk) pairs (``vla_course.data.chunks``), with the
       dataset's own statistics, and labels each frame with where the named cube is in each camera
       (``vla_course.data.localization``, from the layout seed and the joints);
    3. builds ``Pi0`` on the pretrained ``vlm_base`` checkpoint (backbone = the VLM's weights, a new narrow
       action expert, 8 new spatial-softmax keypoint tokens per camera, peaked from the start, and 2
       instruction keypoints that look for what the instruction names; these image tokens are this
       course's additions, not pi0's) and stores the statistics in the model (a mismatch between training
       and deployment normalisation is a classic failure on real arms: here they travel in the checkpoint);
    4. trains with the one loop (``vla_course.training``) on flow matching plus the instruction keypoints'
       localisation loss, single-threaded and seeded, on **relative actions** (``delta_mask``: the five arm
       joints relative to the state at the chunk's start, openpi's ``DeltaActions``; the gripper absolute),
       which the model's config carries;
    5. optional rounds of **expert interventions** (``intervention_rounds``; the shipped recipe runs none):
       the current policy drives new layouts for a random 10..180 steps, the scripted expert takes over
       from wherever the arm is, only the expert's part is kept, and training goes on over demonstrations +
       interventions (the correction data of pi*0.6; a takeover at a random time, not HG-DAgger's
       human-gated one). Each round's checkpoint is cached in the cache's ``checkpoints/``;
    6. picks the re-planning horizon (execute 4 or 8 actions of each chunk) on validation seeds and writes
       it into the model's config;
    7. evaluates through the real control loop on held-out layout seeds (never recorded) and saves.

``pi0_finetune`` lives in ``vla_course/recipes/finetune.py``: a new skill taught to ``pi0_base`` from a few
    recorded episodes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vla_course.data.cache import cache_dir, dataset_size, layout_seeds, recorded_dataset, relative_to_repo
from vla_course.train import recipe
from vla_course.training import Source, TrainConfig, train
from vla_course.training.evaluate import (by_cubes, choose_n_action_steps, chunk_latency_ms, evaluate_pi0,
                                          instruction_keypoint_accuracy, summary)

# Relative actions (openpi's DeltaActions): the five arm joints relative to the state at the chunk's start,
# the gripper absolute. A chunk then spans a few degrees instead of the whole workspace.
DELTA_MASK = (True, True, True, True, True, False)


@dataclass(frozen=True)
class Pi0BaseRecipe:
    """Everything ``pi0_base`` decides, in one place. Layout seeds: training episodes use 0.., interventions
    2000.., validation 5000.., the held-out test seeds 10000.. are never recorded."""

    name: str = "pi0_base"  # names its cached rounds and intervention recordings (recipes may share a round 0)
    # The base recording, in parts (first layout seed, episodes, expert detour in metres), so a bigger dataset
    # reuses a smaller one. Detour episodes first hover beside the cube, then correct (``ScriptedExpert``).
    recordings: tuple = ((0, 300, 0.0), (300, 700, 0.0), (1000, 400, 0.08))
    steps: int = 6500
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 150
    delta_mask: tuple = DELTA_MASK
    grid: int = 4  # image tokens per side per camera (vlm_base was pretrained with 4; 6 trained slower)
    keypoints: int = 8  # spatial-softmax keypoint tokens per camera ...
    keypoint_layer: int = 1  # ... read from the 24x24 conv map (the first conv)
    keypoint_temp: float = 0.05  # starting softmax temperature: peaked maps from step 0 (at 1.0 they stayed flat)
    instruction_keypoints: int = 2  # maps made from the instruction, same layer and temperature (vision.py)
    # Localisation loss on instruction keypoint 0: it learns to land on the named cube, labelled from the sim.
    # Round 0 only: intervention episodes carry no labels.
    localization_weight: float = 0.5
    shift: int = 0  # random-shift augmentation (pixels); 4 px moves the front view by ~2-3 cm, hiding the cubes
    # Rounds of expert interventions: (first layout seed, episodes) per round. The shipped recipe runs none: on
    # the validation seeds round 0 with sharp keypoints beat every run with a round (data/pi0_ablations.json).
    # ((2000, 400),) gives the one round that runs F and H had.
    intervention_rounds: tuple = ()
    intervention_n_action_steps: int = 4  # the policy re-plans every 4 actions while it drives
    takeover_range: tuple = (10, 180)  # the learner drives this many control steps (uniform) before the expert
    round_steps: int = 3000
    round_lr: float = 5e-4
    round_warmup: int = 100
    n_action_steps_candidates: tuple = (4, 8)
    val_seed: int = 5000
    val_episodes: int = 20
    eval_seed: int = 10_000
    eval_episodes: int = 50
    latency_runs: int = 50
    allow_random_vlm: bool = False  # quick runs may start from a random VLM when vlm_base is missing
    progress: bool = True

    def quick(self) -> Pi0BaseRecipe:
        """Seconds, not hours: two episodes, four steps, one tiny intervention round (so that machinery stays
        tested), one evaluation episode."""
        return replace(self, recordings=((0, 2, 0.0),), intervention_rounds=((2000, 1),), steps=4, round_steps=4,
                       batch_size=8, val_episodes=0, eval_episodes=1, latency_runs=5, allow_random_vlm=True,
                       progress=False)

    def train_config(self, seed: int, round_: int = 0) -> TrainConfig:
        first = round_ == 0
        return TrainConfig(steps=self.steps if first else self.round_steps, lr=self.lr if first else self.round_lr,
                           warmup=self.warmup if first else self.round_warmup, seed=seed + round_)


def shift_images(pad: int):
    """A source transform: DrQ-style random shift of every camera image by up to ``pad`` pixels."""
    from vla_course.constants import IMAGE_KEY_PREFIX
    from vla_course.data.chunks import random_shift

    def transform(batch: dict, gen) -> dict:
        for key in list(batch):
            if key.startswith(IMAGE_KEY_PREFIX):
                batch[key] = random_shift(batch[key], pad, gen)
        return batch
    return transform if pad else None


# ---- data and model ----------------------------------------------------------------------
def base_recording(seed: int, episodes: int, detour: float = 0.0, cache=None, progress: bool = True) -> Path:
    """One part of the base recording: the scripted expert on layout seeds ``seed..seed+episodes-1``."""
    if not detour:
        return recorded_dataset(f"pick_place_expert_s{seed}_n{episodes}", episodes, seed=seed, cache=cache,
                                progress=progress)
    return recorded_dataset(f"pick_place_detour{round(detour * 100)}cm_s{seed}_n{episodes}", episodes, seed=seed,
                            policy_kwargs={"detour": detour}, cache=cache, progress=progress)


def intervention_recording(model, seed: int, episodes: int, n_action_steps: int, takeover_range, name: str,
                           cache=None, progress: bool = True) -> Path:
    """Expert interventions on ``model``'s own rollouts (``InterventionPolicy``), made once and reused.

    Episode ``i`` (layout seed ``seed + i``): the policy drives for a random number of steps
    (``takeover_range``), then the scripted expert takes over from wherever the arm is; only the expert's part
    is kept. The recording is tied to the model that drove, so its name says which round made it.
    """
    from vla_course.data import record_dataset
    from vla_course.models import Pi0Policy
    from vla_course.policies import InterventionPolicy

    root = cache_dir(cache) / "datasets" / name
    info = root / "meta" / "info.json"
    if info.exists() and json.loads(info.read_text()).get("total_episodes", 0) > 0:
        return root

    def factory(robot, episode_seed):
        rng = np.random.default_rng([episode_seed, 7])
        learner = Pi0Policy(model, n_action_steps=n_action_steps, seed=episode_seed)
        return InterventionPolicy(robot, learner, int(rng.integers(takeover_range[0], takeover_range[1] + 1)),
                                  seed=episode_seed)

    record_dataset(root, episodes=episodes, seed=seed, policy=factory, overwrite=True, progress=progress,
                   keep="expert")
    return root


def base_vlm(root=None, allow_random: bool = False):
    """The pretrained TinyVLM (``data/checkpoints/vlm_base``); a random one only if allowed and missing."""
    from vla_course.checkpoints import load_pretrained
    from vla_course.constants import COLORS
    from vla_course.models import TinyVLM, WordTokenizer
    from vla_course.sim.tasks import PickPlace

    try:
        vlm, source = load_pretrained("vlm_base", kind="TinyVLM", root=root), "vlm_base"
    except FileNotFoundError:
        if not allow_random:
            raise
        vlm, source = TinyVLM(WordTokenizer()), "random TinyVLM (vlm_base not found)"
    words = " ".join(PickPlace().instruction([c]) for c in COLORS)
    missing = [w for w in words.split() if w not in vlm.tokenizer]
    if missing:  # new words get fresh embedding rows; old ids never change
        vlm.tokenizer.add_texts([words])
        vlm.resize_token_embeddings()
    return vlm, source, sorted(set(missing))


def model_stats(data, delta_mask=None) -> dict:
    """Normalisation statistics for the model: the state's from the dataset's own ``meta.stats``; the
    action chunk's computed over chunks as the model predicts them (relative where ``delta_mask``)."""
    from vla_course.constants import ACTION_KEY, STATE_KEY
    from vla_course.data.chunks import chunk_stats

    return {STATE_KEY: data.stats[STATE_KEY], ACTION_KEY: chunk_stats(data, delta_mask)}


def add_image_tokens(vlm, cfg, seed: int) -> None:
    """The recipe's image tokens on ``vlm``: its grid, then (seeded) keypoint and instruction keypoint tokens (this
    course's additions, not pi0's). ``cfg`` has ``grid``, ``keypoints``, ``keypoint_layer``, ``keypoint_temp`` and
    ``instruction_keypoints`` (``Pi0BaseRecipe`` and the recipes that copy it)."""
    vlm.set_grid(cfg.grid)
    torch.manual_seed(seed)
    if cfg.keypoints:
        vlm.add_keypoints(cfg.keypoints, cfg.keypoint_layer, cfg.keypoint_temp)
    if cfg.instruction_keypoints:
        vlm.add_instruction_keypoints(cfg.instruction_keypoints, cfg.keypoint_temp)


def build_pi0(vlm, stats: dict, **config):
    from vla_course.models import Pi0, Pi0Config

    model = Pi0(vlm, Pi0Config(**config))
    model.set_normalization_stats(stats)
    return model


# ---- recipes -----------------------------------------------------------------------------
@recipe("pi0_base", "pi0 in miniature on vlm_base: 1400 expert episodes (3-5 cubes, any target; 400 with detours), "
                    "keypoint tokens; optional rounds of expert interventions (none shipped); eval on 50 held-out seeds",
        config=Pi0BaseRecipe)
def pi0_base(cfg: Pi0BaseRecipe, *, seed: int, out_dir: Path, cache=None) -> dict:
    """Round 0 clones the demonstrations; each later round lets the current policy drive, records the expert
    taking over (``intervention_recording``) and trains on everything so far. Every round's checkpoint is
    cached in ``<cache>/checkpoints/pi0_base_round<k>_seed<seed>`` (changing a late round re-uses the early
    ones; a quick run never re-uses); the last one is evaluated and saved."""
    from vla_course.data.chunks import load_chunks
    from vla_course.data.localization import target_pixels
    from vla_course.models import Pi0, count_parameters
    from vla_course.robot import make_robot, observation_to_frame

    torch.set_num_threads(1)
    quick = not cfg.progress
    roots = [base_recording(*part, cache=cache, progress=cfg.progress) for part in cfg.recordings]
    vlm, source, added = base_vlm(allow_random=cfg.allow_random_vlm)
    rounds_dir = cache_dir(cache) / "checkpoints"

    def round_dir(k: int) -> Path:
        return rounds_dir / f"{cfg.name}{'_quick' if quick else ''}_round{k}_seed{seed}"

    def cached(k: int):
        log = round_dir(k) / "round.json"
        if quick or not log.exists():
            return None
        return Pi0.from_pretrained(round_dir(k)), json.loads(log.read_text())

    def train_round(model, k, data_roots, record_seconds=None) -> tuple:
        data = load_chunks(data_roots, progress=cfg.progress)  # round k > 0 keeps round 0's statistics
        if k == 0 and cfg.instruction_keypoints and cfg.localization_weight:
            data.target_xy, data.target_valid = target_pixels(data, layout_seeds(cfg.recordings))
        if model is None:
            add_image_tokens(vlm, cfg, seed)
            model = build_pi0(vlm, model_stats(data, cfg.delta_mask), delta_mask=cfg.delta_mask,
                              localization_weight=cfg.localization_weight)
        log = train(model, Source("robot", data, cfg.batch_size, transform=shift_images(cfg.shift)),
                    cfg.train_config(seed, k), progress=cfg.progress,
                    desc=f"round {k}: " + ("demonstrations" if k == 0 else "+ interventions"))
        del data
        model.save_pretrained(round_dir(k))
        log = {"round": k, "steps": log.steps, "lr": cfg.train_config(seed, k).lr, "seconds": log.seconds,
               "loss_every_10": log.loss[::10], "final_loss": log.final()}
        if record_seconds is not None:
            log["recording_seconds"] = record_seconds
        (round_dir(k) / "round.json").write_text(json.dumps(log))
        return model, log

    # Round 0: behaviour cloning on the expert's demonstrations.
    model, log = cached(0) or train_round(None, 0, roots)
    logs = [{**log, "data": "demonstrations"}]
    # Rounds 1..: the current policy drives, the expert takes over, training goes on with everything so far.
    iroots = []
    for k, (i_seed, i_episodes) in enumerate(cfg.intervention_rounds, start=1):
        t = time.perf_counter()
        iroots.append(intervention_recording(
            model, i_seed, i_episodes, cfg.intervention_n_action_steps, cfg.takeover_range, cache=cache,
            progress=cfg.progress,
            name=f"pick_place_interventions{'' if cfg.name == 'pi0_base' else '_' + cfg.name}"
                 f"{'_quick' if quick else ''}_seed{seed}_r{k}_s{i_seed}_n{i_episodes}"))
        record_seconds = time.perf_counter() - t
        model, log = cached(k) or train_round(model, k, [*roots, *iroots], record_seconds)
        logs.append({**log, "data": "demonstrations + " + ("round-1 interventions" if k == 1 else
                                                            f"interventions of rounds 1..{k}"),
                     "interventions": dataset_size(iroots[-1])[0],
                     "layout_seeds": f"{i_seed}..{i_seed + i_episodes - 1}"})

    nas, validation = choose_n_action_steps(model, cfg.val_seed, cfg.val_episodes, cfg.n_action_steps_candidates,
                                            progress=cfg.progress)
    model.config.n_action_steps = nas  # how the model acts travels with it (config.json)
    ev = evaluate_pi0(model, cfg.eval_seed, cfg.eval_episodes, progress=cfg.progress)
    with make_robot("sim", seed=cfg.eval_seed) as robot:
        frame0 = observation_to_frame(robot.get_observation(), robot.instruction)
    lat = chunk_latency_ms(model, frame0, runs=cfg.latency_runs)
    ev_seeds = range(cfg.eval_seed, cfg.eval_seed + cfg.eval_episodes)
    model.save_pretrained(out_dir)
    sizes = [dataset_size(r) for r in [*roots, *iroots]]
    return {
        "data": {"dataset": [relative_to_repo(r) for r in [*roots, *iroots]],
                 "episodes": sum(e for e, _ in sizes), "frames": sum(f for _, f in sizes),
                 "parts": [{"layout_seeds": f"{s0}..{s0 + n - 1}", "detour_m": d} for s0, n, d in cfg.recordings]
                 + [{"layout_seeds": r["layout_seeds"], "interventions": r["interventions"],
                     "takeover_steps": list(cfg.takeover_range), "driver": f"round-{r['round'] - 1} policy"}
                    for r in logs[1:]],
                 "policy": "scripted expert (noise_std=0; detour parts hover beside the cube first, then correct; "
                           "intervention parts take over from the previous round's policy)",
                 "task": "pick_place (3-5 cubes, random target)", "chunk_size": model.config.chunk_size},
        "metrics": {"success_rate": ev["success_rate"], "successes": ev["successes"],
                    "eval_episodes": cfg.eval_episodes,
                    "eval_seeds": f"{cfg.eval_seed}..{cfg.eval_seed + cfg.eval_episodes - 1}", "by_n_cubes": by_cubes(ev),
                    "final_loss": logs[-1]["final_loss"], "ms_per_chunk": lat,
                    "instruction_keypoints": (instruction_keypoint_accuracy(model, ev_seeds)
                                              if cfg.instruction_keypoints else None),
                    "parameters": count_parameters(model)},
        "train_seconds": sum(r["seconds"] for r in logs),
        "training": {"steps": sum(r["steps"] for r in logs), "batch_size": cfg.batch_size, "lr": cfg.lr,
                     "backbone_init": source, "words_added": added, "image_grid": cfg.grid,
                     "keypoints": cfg.keypoints, "instruction_keypoints": cfg.instruction_keypoints,
                     "localization_weight": cfg.localization_weight,
                     "augmentation": f"random shift {cfg.shift} px" if cfg.shift else "none",
                     "rounds": [{k: v for k, v in r.items() if k != "loss_every_10"} for r in logs],
                     "loss_every_step": [x for r in logs for x in r["loss_every_10"]]},  # every 10th step
        "n_action_steps": nas,
        "n_action_steps_validation": validation,
        "delta_mask": list(cfg.delta_mask),
        "evaluation": summary(ev),
    }

