"""pi0 in miniature, trained on expert demonstrations in the SO-100 sim.

Two recipes, in the order a real SO-100 user would run them::

    vla-course train pi0_base       # the "pre-trained" policy: varied scenes, every colour as target
    vla-course train pi0_finetune   # start from pi0_base, adapt to a small set of "your own" episodes

``pi0_base``
    1. records (or reuses, from ``outputs/datasets/``) LeRobotDatasets of the
       scripted expert (``BASE_RECORDINGS``): 3-5 cubes, random colours, random
       target, so the instruction must pick the target among distractors; some
       episodes with a *detour* (hover beside the cube, then correct), so the data
       show how to recover from an off-target reach;
    2. loads it into memory as (observation, action chunk) pairs
       (``vla_course.data.chunks``), with the dataset's own statistics, and labels each frame with where the
       named cube is in each camera (``vla_course.data.localization``, from the layout seed and the joints);
    3. builds ``Pi0`` on the pretrained ``vlm_base`` checkpoint (backbone = the
       VLM's weights, a new narrow action expert, 8 new spatial-softmax keypoint
       tokens per camera, peaked from the start: ``KEYPOINTS``, and 2 instruction keypoints that look for
       what the instruction names: ``QUERY_KEYPOINTS``) and stores the statistics in
       the model (a mismatch between training and deployment normalisation is a
       classic failure on real arms: here they travel inside the checkpoint);
    4. trains with flow matching plus the instruction keypoints' localisation loss (``LOCALIZATION_WEIGHT``;
       AdamW, warm-up + cosine, no image shift: see ``SHIFT``), single-threaded and seeded, on **delta actions**: the
       five arm joints relative to the state at the chunk's start (openpi's
       ``DeltaActions``), the gripper absolute;
    5. optional rounds of **expert interventions** (``INTERVENTION_ROUNDS``; the shipped recipe runs none,
       see there): the current policy drives 400 new layouts for a random 10..180 steps, the scripted
       expert takes over from wherever the arm is, only the expert's part is recorded, and training goes on
       over demonstrations + interventions (HG-DAgger; the correction data of pi*0.6). Each round's
       checkpoint is cached in ``outputs/checkpoints/``;
    6. picks the re-planning horizon (execute 4 or 8 actions of each chunk) on
       validation seeds ``5000..5019``;
    7. evaluates through the real control loop on held-out layout seeds
       (``10000..10049``, never recorded) and saves.

``pi0_finetune``
    The fine-tuning story: a narrower set-up than pre-training (the most
    cluttered tables: always 5 cubes, 4 of them distractors), a few recorded
    episodes, a short, gentle run from ``pi0_base`` (low learning rate, no image shift: either one
    erased the base skill), success before and after on held-out seeds of that set-up.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from vla_course.constants import IMAGE_KEY_PREFIX, JOINT_NAMES
from vla_course.policies import ExpertPolicy, Pi0Actor  # noqa: F401  (Pi0Actor re-exported for notebooks)
from vla_course.train import recipe

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET_CACHE = REPO_ROOT / "outputs" / "datasets"

# Layout seeds. Training episodes use 0.., fine-tuning episodes 20000.., and the
# evaluation seeds below are never recorded.
# The base recording, in parts (first layout seed, episodes, expert detour in metres), so a bigger dataset
# reuses a smaller one. Detour episodes first hover beside the cube, then correct (see ``ScriptedExpert``).
BASE_RECORDINGS = ((0, 300, 0.0), (300, 700, 0.0), (1000, 400, 0.08))
EVAL_SEED = 10_000
EVAL_EPISODES = 50
FT_TASK_KWARGS = {"n_cubes": 5}
FT_SEED = 20_000
FT_EPISODES = 30
FT_EVAL_SEED = 30_000
FT_EVAL_EPISODES = 20
FT_LR, FT_STEPS = 5e-5, 300  # gently: at 2e-4 for 600 steps the 30 episodes erased the base skill (8/20 -> 2/20)

N_ACTION_STEPS = 8  # re-plan after half a chunk (0.27 s at 30 Hz); the recipe picks 4 or 8 on validation seeds
NAS_CANDIDATES = (4, 8)
VAL_SEED, VAL_EPISODES = 5_000, 20
# Delta actions (openpi's DeltaActions): the five arm joints are predicted relative to the state at the
# start of the chunk, the gripper stays absolute. A chunk then spans a few degrees instead of the whole
# workspace, so the same normalised error is a much smaller error in degrees.
DELTA_MASK = (True, True, True, True, True, False)
LR, WARMUP = 1e-3, 150
BASE_STEPS, BATCH_SIZE = 6500, 64
GRID = 4  # image tokens per side per camera (vlm_base was pretrained with 4; 6 trained slower per step and per gain)
KEYPOINTS, KEYPOINT_LAYER = 8, 1  # spatial-softmax keypoint tokens per camera, read from the 24x24 conv map (the first conv)
KEYPOINT_TEMP = 0.05  # starting softmax temperature: peaked maps from step 0 (at 1.0 they stayed nearly flat: run K1)
QUERY_KEYPOINTS = 2  # instruction keypoint tokens per camera (vision.py): maps made from the instruction, same layer/temp
# Localisation loss on instruction keypoint 0 (Pi0Config.localization_weight): it learns to land on the named cube,
# labelled from the sim (data/localization.py). Round 0 only: intervention episodes carry no labels.
LOCALIZATION_WEIGHT = 0.5
# Rounds of expert interventions: the current policy drives each of these layouts for a while, the expert takes
# over, and training continues on demonstrations + all interventions so far (HG-DAgger; pi*0.6's corrections).
# Per round: first layout seed, episodes. The shipped recipe runs none: on the validation seeds, round 0 with sharp
# keypoints (K1S) beat every run with a round of interventions (F, H; G had two), see data/pi0_ablations.json.
# ((2000, 400),) gives the one round that runs F and H had.
INTERVENTION_ROUNDS: tuple[tuple[int, int], ...] = ()
INTERVENTION_NAS = 4  # the policy re-plans every 4 actions while it drives
ROUND_STEPS, ROUND_LR, ROUND_WARMUP = 3000, 5e-4, 100
ROUND_CACHE = REPO_ROOT / "outputs" / "checkpoints"
SHIFT = 0  # random-shift augmentation (pixels); a 4-pixel shift moves the front view by ~2-3 cm, hiding where cubes are


# ---- data --------------------------------------------------------------------------------
def recorded_dataset(name: str, episodes: int, seed: int, task_kwargs: dict | None = None,
                     cache: Path | None = None, progress: bool = True, policy_kwargs: dict | None = None) -> Path:
    """Path of an expert recording, made once and reused (``outputs/datasets/<name>``).
    ``policy_kwargs`` go to the scripted expert (e.g. ``{"detour": 0.08}``)."""
    from vla_course.data import record_dataset

    root = Path(cache or DATASET_CACHE) / name
    info = root / "meta" / "info.json"
    if info.exists() and json.loads(info.read_text()).get("total_episodes") == episodes:
        return root
    record_dataset(root, episodes=episodes, seed=seed, overwrite=True, progress=progress,
                   task_kwargs=task_kwargs, policy_kwargs=policy_kwargs)
    return root


def layout_seeds(parts) -> dict[int, int]:
    """Episode index -> layout seed, for recordings ``(first seed, episodes, ...)`` loaded in this order."""
    out, offset = {}, 0
    for first, episodes, *_ in parts:
        out.update({offset + e: first + e for e in range(episodes)})
        offset += episodes
    return out


def base_recording(seed: int, episodes: int, detour: float = 0.0) -> Path:
    """One part of the base recording: the scripted expert on layout seeds ``seed..seed+episodes-1``."""
    if not detour:
        return recorded_dataset(f"pick_place_expert_s{seed}_n{episodes}", episodes, seed=seed)
    return recorded_dataset(f"pick_place_detour{round(detour * 100)}cm_s{seed}_n{episodes}", episodes, seed=seed,
                            policy_kwargs={"detour": detour})


TAKEOVER_RANGE = (10, 180)  # the learner drives this many control steps (uniform) before the expert takes over


def intervention_recording(model, seed: int, episodes: int, n_action_steps: int, name: str | None = None,
                           cache: Path | None = None, progress: bool = True) -> Path:
    """Expert interventions on ``model``'s own rollouts (``InterventionPolicy``), made once and reused.

    Episode ``i`` (layout seed ``seed + i``): the policy drives for a random number of steps
    (``TAKEOVER_RANGE``), then the scripted expert takes over from wherever the arm is; only the expert's part
    is recorded. The recording is tied to the model that drove, so its name says which round of training
    made it.
    """
    from vla_course.data import record_dataset
    from vla_course.policies import InterventionPolicy

    root = Path(cache or DATASET_CACHE) / (name or f"pick_place_interventions_s{seed}_n{episodes}")
    info = root / "meta" / "info.json"
    if info.exists() and json.loads(info.read_text()).get("total_episodes", 0) > 0:
        return root

    def factory(robot, episode_seed):
        rng = np.random.default_rng([episode_seed, 7])
        learner = Pi0Actor(model, n_action_steps=n_action_steps, delta_mask=DELTA_MASK, seed=episode_seed)
        return InterventionPolicy(robot, learner, int(rng.integers(TAKEOVER_RANGE[0], TAKEOVER_RANGE[1] + 1)),
                                  seed=episode_seed)

    record_dataset(root, episodes=episodes, seed=seed, policy=factory, overwrite=True, progress=progress)
    return root


def base_vlm(root=None, allow_random: bool = False):
    """The pretrained TinyVLM (``data/checkpoints/vlm_base``); a random one only if allowed and missing."""
    from vla_course.checkpoints import load_pretrained
    from vla_course.models import TinyVLM, WordTokenizer
    from vla_course.sim.tasks import PickPlace
    from vla_course.constants import COLORS

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


def build_pi0(vlm, stats: dict, **config):
    from vla_course.models import Pi0, Pi0Config

    model = Pi0(vlm, Pi0Config(**config))
    model.set_normalization_stats(stats)
    return model


def model_stats(data) -> dict:
    """Normalisation statistics for the model: the state's from the dataset's own ``meta.stats``; the
    action chunk's computed over chunks as the model sees them (delta or absolute)."""
    from vla_course.constants import ACTION_KEY, STATE_KEY
    from vla_course.data.chunks import chunk_stats

    return {STATE_KEY: data.stats[STATE_KEY], ACTION_KEY: chunk_stats(data)}


# ---- training ----------------------------------------------------------------------------
def lr_at(step: int, steps: int, lr: float, warmup: int, final_frac: float = 0.1) -> float:
    """Linear warm-up, then cosine decay to ``final_frac * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def train_pi0(model, data, steps: int, batch_size: int = 64, lr: float = 5e-4, warmup: int = 100,
              weight_decay: float = 1e-4, shift: int = SHIFT, seed: int = 0, progress: bool = True,
              desc: str = "train pi0", callback=None) -> dict:
    """Flow-matching training on random (observation, chunk) batches drawn from a ``ChunkDataset``.

    Returns ``{"loss": [per-step loss], "seconds": wall time, "steps", "batch_size", "lr"}``.
    ``callback(step, loss)`` is called after every step (the notebook plots with it).
    """
    from tqdm.auto import tqdm

    from vla_course.data.chunks import random_shift

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    model.train()
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=2.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        batch = data.batch(idx)
        for key in list(batch):
            if key.startswith(IMAGE_KEY_PREFIX):
                batch[key] = random_shift(batch[key], shift, gen)
        loss = model.compute_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-25:]):.3f}")
        if callback is not None:
            callback(step, losses[-1])
    model.eval()
    return {"loss": losses, "seconds": time.perf_counter() - start, "steps": steps, "batch_size": batch_size,
            "lr": lr}


# ---- evaluation --------------------------------------------------------------------------
def evaluate_pi0(model, seed: int, episodes: int, n_action_steps: int = N_ACTION_STEPS, task: str = "pick_place",
                 task_kwargs: dict | None = None, progress: bool = True, render=None, policy_seed: int = 0,
                 delta_mask=DELTA_MASK) -> dict:
    """Success over layout seeds ``seed .. seed+episodes-1`` through the real control loop.

    The policy sees only the cameras, the joint state and the instruction.
    ``render(env) -> frame`` (optional) records a video of every episode.
    """
    from tqdm.auto import tqdm

    from vla_course.constants import CAMERAS, IMAGE_SIZE
    from vla_course.control import run_episode
    from vla_course.robot import make_robot

    policy = Pi0Actor(model, n_action_steps=n_action_steps, delta_mask=delta_mask, seed=policy_seed)
    robot = make_robot("sim", task=task, seed=seed, image_size=IMAGE_SIZE, cameras=CAMERAS, **(task_kwargs or {}))
    rows, videos = [], []
    with robot:
        for i in tqdm(range(episodes), desc="rollouts", disable=not progress):
            robot.reset(seed + i)
            env = robot.env
            held: list[str] = []  # cubes the gripper held at some point: tells "wrong cube" from "missed grasp"

            def on_step(frame, action, env=env, held=held):
                cube = env.held_cube()
                if cube is not None and cube not in held:
                    held.append(cube)

            r = run_episode(robot, policy, on_step=on_step, render=(lambda: render(env)) if render else None)
            rows.append({"seed": seed + i, "success": bool(r.success), "steps": r.steps,
                         "n_cubes": len(env.layout.cubes), "target": env.layout.targets[0],
                         "held": held, "instruction": r.instruction})
            if render:
                videos.append(r.frames)
    succ = [r["success"] for r in rows]
    out = {"seed": seed, "episodes": episodes, "successes": int(sum(succ)), "success_rate": float(np.mean(succ)),
           "n_action_steps": n_action_steps, "task": task, "task_kwargs": task_kwargs or {}, "episodes_detail": rows}
    if render:
        out["videos"] = videos
    return out


def first_chunk_agreement(model, seeds, samples: int = 8, delta_mask=DELTA_MASK) -> dict:
    """Does the policy's *first* chunk go where the expert's first 16 actions go?

    At the first frame every episode starts from the same arm pose, so the state says nothing: only the
    cameras and the instruction can tell the policy where the named cube is. For each layout seed we
    compare the joint change over one chunk (last action minus the start state): the expert's (run for
    H steps) against the policy's (mean of ``samples`` sampled chunks). Per joint it returns the least-squares
    ``gain`` (1 = right amount, 0 = the same move whatever the scene) and the correlation ``corr``.
    """
    from vla_course.constants import STATE_KEY
    from vla_course.models import Pi0Policy
    from vla_course.robot import action_array_to_dict, make_robot, observation_to_frame

    seeds = list(seeds)
    h, mask = model.config.chunk_size, torch.as_tensor(delta_mask, dtype=torch.float32)
    expert_moves, policy_moves = [], []
    robot = make_robot("sim", seed=seeds[0])
    with robot:
        for s in seeds:
            robot.reset(s)
            f0 = observation_to_frame(robot.get_observation(), robot.instruction)
            batch = Pi0Policy(model).frame_to_batch(f0)
            batch = {k: (v.expand(samples, *v.shape[1:]) if torch.is_tensor(v) else v * samples)
                     for k, v in batch.items()}
            noise = torch.randn(samples, h, model.config.action_dim, generator=torch.Generator().manual_seed(s))
            chunk = model.sample_actions(batch, noise=noise)[:, -1].mean(0)  # relative where mask is True
            state0 = torch.as_tensor(f0[STATE_KEY])
            policy_moves.append((chunk + state0 * mask - state0).numpy())
            expert = ExpertPolicy(robot)
            expert.reset()
            for _ in range(h):
                a = expert.act(observation_to_frame(robot.get_observation(), robot.instruction))
                robot.send_action(action_array_to_dict(a))
            expert_moves.append(a - f0[STATE_KEY])
    e, p = np.array(expert_moves), np.array(policy_moves)
    out = {}
    for j, name in enumerate(JOINT_NAMES[:5]):
        ec = e[:, j] - e[:, j].mean()
        gain = float((ec * (p[:, j] - p[:, j].mean())).sum() / max((ec ** 2).sum(), 1e-9))
        out[name] = {"gain": gain, "corr": float(np.corrcoef(e[:, j], p[:, j])[0, 1]),
                     "expert_std_deg": float(e[:, j].std())}
    return out


def instruction_keypoint_accuracy(model, seeds) -> dict:
    """Does instruction keypoint 0 land on the named cube? On the first frame of each layout, per camera:
    how often the cube nearest to the keypoint is the named one (among the cubes in view), and the median
    distance to the named cube in pixels. Chance is about one in the number of cubes."""
    from vla_course.constants import IMAGE_SIZE
    from vla_course.models import Pi0Policy
    from vla_course.robot import make_robot, observation_to_frame

    seeds, vis = list(seeds), model.vlm.vision
    if not vis.query_keypoints:
        raise ValueError("this model has no instruction keypoints (VLMConfig.query_keypoints = 0)")
    hits = {cam: [] for cam in model.vlm.config.cameras}
    dists = {cam: [] for cam in hits}
    with make_robot("sim", seed=seeds[0]) as robot:
        for s in seeds:
            robot.reset(s)
            env = robot.env
            batch = Pi0Policy(model).frame_to_batch(observation_to_frame(robot.get_observation(), robot.instruction))
            with torch.no_grad():
                model.vlm.embed_prefix(batch, batch["task"])
            for c, cam in enumerate(hits):
                px = (vis.query_xy[0, c, 0].numpy() + 1) / 2 * (IMAGE_SIZE - 1)
                d = {name: float(np.linalg.norm(px - env.project(env.cube_pos(name), cam, IMAGE_SIZE)))
                     for name in env.layout.cubes}
                d = {k: v for k, v in d.items() if np.isfinite(v)}
                target = env.layout.targets[0]
                if target in d:
                    hits[cam].append(min(d, key=d.get) == target)
                    dists[cam].append(d[target])
    return {cam: {"nearest_is_named": int(sum(hits[cam])), "frames": len(hits[cam]),
                  "median_px": float(np.median(dists[cam])) if dists[cam] else float("nan")} for cam in hits}


def choose_n_action_steps(model, episodes: int = 20, candidates=NAS_CANDIDATES, progress: bool = True
                          ) -> tuple[int, dict]:
    """Pick the re-planning horizon on validation seeds (``VAL_SEED..``: neither trained on nor the held-out
    test seeds). Ties go to the longer horizon (fewer chunks to compute)."""
    if episodes <= 0:
        return N_ACTION_STEPS, {}
    results = {n: evaluate_pi0(model, VAL_SEED, episodes, n_action_steps=n, progress=progress)["successes"]
               for n in candidates}
    best = max(results, key=lambda n: (results[n], n))
    return best, {"seeds": f"{VAL_SEED}..{VAL_SEED + episodes - 1}", "episodes": episodes,
                  "successes": {str(n): k for n, k in results.items()}}


def chunk_latency_ms(model, frame: dict, runs: int = 30, warmup: int = 5, num_steps: int = 10) -> dict:
    """Wall-clock ms for one action chunk (prefix once + ``num_steps`` cached Euler steps), batch 1."""
    from vla_course.models import Pi0Policy

    batch = Pi0Policy(model).frame_to_batch(frame)
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        model.sample_actions(batch, num_steps=num_steps)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(times)), "p10_ms": float(np.percentile(times, 10)),
            "threads": torch.get_num_threads(), "runs": runs}


def _rel(root: Path) -> str:
    """A dataset path for metadata.json: relative to the repository when it lies inside it."""
    return str(root.relative_to(REPO_ROOT)) if root.is_relative_to(REPO_ROOT) else str(root)


def _summary(ev: dict) -> dict:
    """Evaluation results without the videos, for metadata.json."""
    return {k: v for k, v in ev.items() if k != "videos"}


def _by_cubes(ev: dict) -> dict:
    out = {}
    for r in ev["episodes_detail"]:
        out.setdefault(str(r["n_cubes"]), []).append(r["success"])
    return {k: f"{sum(v)}/{len(v)}" for k, v in sorted(out.items())}


# ---- recipes -----------------------------------------------------------------------------
def _size(root: Path) -> tuple[int, int]:
    """(episodes, frames) of a recorded dataset, from its ``meta/info.json``."""
    info = json.loads((root / "meta" / "info.json").read_text())
    return info["total_episodes"], info["total_frames"]


@recipe("pi0_base", "pi0 in miniature on vlm_base: 1400 expert episodes (3-5 cubes, any target; 400 with detours), "
                    "keypoint tokens; optional rounds of expert interventions (none shipped); eval on 50 held-out seeds")
def pi0_base(seed: int, out_dir: Path, quick: bool = False) -> dict:
    """Round 0 clones the demonstrations; each later round lets the current policy drive, records the expert
    taking over (``intervention_recording``) and trains on everything so far. Every round's checkpoint is
    cached in ``outputs/checkpoints/pi0_base_round<k>_seed<seed>`` (so changing a late round re-uses the early
    ones); the last one is evaluated and saved."""
    from vla_course.data.chunks import load_chunks
    from vla_course.data.localization import target_pixels
    from vla_course.models import Pi0, count_parameters
    from vla_course.robot import make_robot, observation_to_frame

    torch.set_num_threads(1)
    parts = ((0, 2, 0.0),) if quick else BASE_RECORDINGS
    rounds = ((2000, 1),) if quick else INTERVENTION_ROUNDS  # quick: one tiny round, so the machinery stays tested
    steps0, steps_k = (4, 4) if quick else (BASE_STEPS, ROUND_STEPS)
    batch_size = 8 if quick else BATCH_SIZE
    eval_episodes = 1 if quick else EVAL_EPISODES
    roots = [base_recording(*part) for part in parts]
    vlm, source, added = base_vlm(allow_random=quick)

    def cache(k: int) -> Path:
        return (out_dir.parent / f"pi0_base_round{k}") if quick else ROUND_CACHE / f"pi0_base_round{k}_seed{seed}"

    def cached(k: int):
        log = cache(k) / "round.json"
        if quick or not log.exists():
            return None
        return Pi0.from_pretrained(cache(k)), json.loads(log.read_text())

    def train_round(model, k, data_roots, record_seconds=None, **kw) -> tuple:
        data = load_chunks(data_roots)  # round k > 0 keeps round 0's statistics (the weights learned to read those)
        data.delta_mask = DELTA_MASK
        if k == 0 and QUERY_KEYPOINTS and LOCALIZATION_WEIGHT:
            data.target_xy, data.target_valid = target_pixels(data, layout_seeds(parts))
        if model is None:
            vlm.set_grid(GRID)
            torch.manual_seed(seed)
            if KEYPOINTS:
                vlm.add_keypoints(KEYPOINTS, KEYPOINT_LAYER, KEYPOINT_TEMP)
            if QUERY_KEYPOINTS:
                vlm.add_query_keypoints(QUERY_KEYPOINTS, KEYPOINT_TEMP)
            model = build_pi0(vlm, model_stats(data), localization_weight=LOCALIZATION_WEIGHT)
        log = train_pi0(model, data, batch_size=batch_size, shift=SHIFT, seed=seed + k, **kw)
        del data
        model.save_pretrained(cache(k))
        log = {"round": k, "steps": log["steps"], "lr": log["lr"], "seconds": log["seconds"],
               "loss_every_10": log["loss"][::10], "final_loss": float(np.mean(log["loss"][-50:]))}
        if record_seconds is not None:
            log["recording_seconds"] = record_seconds
        (cache(k) / "round.json").write_text(json.dumps(log))
        return model, log

    # Round 0: behaviour cloning on the expert's demonstrations.
    model, log = cached(0) or train_round(None, 0, roots, steps=steps0, lr=LR, warmup=WARMUP,
                                          desc="round 0: demonstrations")
    logs = [{**log, "data": "demonstrations"}]
    # Rounds 1..: the current policy drives, the expert takes over, training goes on with everything so far.
    iroots = []
    for k, (i_seed, i_episodes) in enumerate(rounds, start=1):
        t = time.perf_counter()
        iroots.append(intervention_recording(
            model, i_seed, i_episodes, n_action_steps=INTERVENTION_NAS,
            name=f"pick_place_interventions{'_quick' if quick else ''}_seed{seed}_r{k}_s{i_seed}_n{i_episodes}"))
        record_seconds = time.perf_counter() - t
        model, log = cached(k) or train_round(model, k, [*roots, *iroots], record_seconds, steps=steps_k,
                                              lr=ROUND_LR, warmup=ROUND_WARMUP, desc=f"round {k}: + interventions")
        logs.append({**log, "data": "demonstrations + " + ("round-1 interventions" if k == 1 else
                                                            f"interventions of rounds 1..{k}"),
                     "interventions": _size(iroots[-1])[0], "layout_seeds": f"{i_seed}..{i_seed + i_episodes - 1}"})

    nas, validation = choose_n_action_steps(model, episodes=0 if quick else VAL_EPISODES)
    ev = evaluate_pi0(model, EVAL_SEED, eval_episodes, n_action_steps=nas)
    with make_robot("sim", seed=EVAL_SEED) as robot:
        frame0 = observation_to_frame(robot.get_observation(), robot.instruction)
    lat = chunk_latency_ms(model, frame0, runs=5 if quick else 50)
    ev_seeds = range(EVAL_SEED, EVAL_SEED + eval_episodes)
    model.save_pretrained(out_dir)
    sizes = [_size(r) for r in [*roots, *iroots]]
    return {
        "data": {"dataset": [_rel(r) for r in [*roots, *iroots]],
                 "episodes": sum(e for e, _ in sizes), "frames": sum(f for _, f in sizes),
                 "parts": [{"layout_seeds": f"{s0}..{s0 + n - 1}", "detour_m": d} for s0, n, d in parts]
                 + [{"layout_seeds": r["layout_seeds"], "interventions": r["interventions"],
                     "takeover_steps": list(TAKEOVER_RANGE), "driver": f"round-{r['round'] - 1} policy"}
                    for r in logs[1:]],
                 "policy": "scripted expert (noise_std=0; detour parts hover beside the cube first, then correct; "
                           "intervention parts take over from the previous round's policy)",
                 "task": "pick_place (3-5 cubes, random target)", "chunk_size": model.config.chunk_size},
        "metrics": {"success_rate": ev["success_rate"], "successes": ev["successes"], "eval_episodes": eval_episodes,
                    "eval_seeds": f"{EVAL_SEED}..{EVAL_SEED + eval_episodes - 1}", "by_n_cubes": _by_cubes(ev),
                    "final_loss": logs[-1]["final_loss"], "ms_per_chunk": lat,
                    "instruction_keypoints": (instruction_keypoint_accuracy(model, ev_seeds) if QUERY_KEYPOINTS
                                              else None),
                    "parameters": count_parameters(model)},
        "train_seconds": sum(r["seconds"] for r in logs),
        "training": {"steps": sum(r["steps"] for r in logs), "batch_size": batch_size, "lr": LR,
                     "backbone_init": source, "words_added": added, "image_grid": GRID,
                     "keypoints": KEYPOINTS, "instruction_keypoints": QUERY_KEYPOINTS,
                     "localization_weight": LOCALIZATION_WEIGHT,
                     "augmentation": f"random shift {SHIFT} px" if SHIFT else "none",
                     "rounds": [{k: v for k, v in r.items() if k != "loss_every_10"} for r in logs],
                     "loss_every_step": [x for r in logs for x in r["loss_every_10"]]},  # every 10th step
        "n_action_steps": nas,
        "n_action_steps_validation": validation,
        "delta_mask": list(DELTA_MASK),
        "evaluation": _summary(ev),
    }


@recipe("pi0_finetune", "pi0_base fine-tuned on 30 episodes of a narrower set-up (5 cubes): before/after success")
def pi0_finetune(seed: int, out_dir: Path, quick: bool = False) -> dict:
    from vla_course.checkpoints import load_pretrained, read_metadata
    from vla_course.data.chunks import load_chunks

    torch.set_num_threads(1)
    episodes = 2 if quick else FT_EPISODES
    steps = 4 if quick else FT_STEPS
    batch_size = 8 if quick else 64
    eval_episodes = 1 if quick else FT_EVAL_EPISODES
    root = recorded_dataset(f"pick_place_5cubes_s{FT_SEED}_n{episodes}", episodes, seed=FT_SEED,
                            task_kwargs=FT_TASK_KWARGS)
    data = load_chunks(root)
    data.delta_mask = DELTA_MASK
    model = load_pretrained("pi0_base", kind="Pi0", root=out_dir.parent)
    nas = read_metadata("pi0_base", root=out_dir.parent).get("n_action_steps", N_ACTION_STEPS)
    before = evaluate_pi0(model, FT_EVAL_SEED, eval_episodes, n_action_steps=nas, task_kwargs=FT_TASK_KWARGS)
    # The base checkpoint's normalisation statistics stay: the fine-tuning data is a subset of the same
    # action space, and changing them would shift every input the pretrained weights learned to read.
    log = train_pi0(model, data, steps=steps, batch_size=batch_size, lr=FT_LR, warmup=50, shift=SHIFT, seed=seed,
                    desc="fine-tune pi0")  # the same augmentation as the base run (none): a shift moves the cubes
    after = evaluate_pi0(model, FT_EVAL_SEED, eval_episodes, n_action_steps=nas, task_kwargs=FT_TASK_KWARGS)
    general = evaluate_pi0(model, EVAL_SEED, 1 if quick else 20, n_action_steps=nas)  # still does the general task?
    model.save_pretrained(out_dir)
    return {
        "data": {"dataset": _rel(root),
                 "episodes": data.num_episodes, "frames": len(data),
                 "layout_seeds": f"{FT_SEED}..{FT_SEED + episodes - 1}", "task": "pick_place with 5 cubes",
                 "task_kwargs": FT_TASK_KWARGS, "init": "pi0_base"},
        "metrics": {"before": {"success_rate": before["success_rate"], "successes": before["successes"]},
                    "after": {"success_rate": after["success_rate"], "successes": after["successes"]},
                    "eval_episodes": eval_episodes,
                    "eval_seeds": f"{FT_EVAL_SEED}..{FT_EVAL_SEED + eval_episodes - 1} (5 cubes)",
                    "general": {"success_rate": general["success_rate"], "successes": general["successes"],
                                "episodes": general["episodes"],
                                "eval_seeds": f"{EVAL_SEED}..{EVAL_SEED + general['episodes'] - 1}"},
                    "final_loss": float(np.mean(log["loss"][-50:]))},
        "train_seconds": log["seconds"],
        "training": {"steps": steps, "batch_size": batch_size, "lr": log["lr"], "loss_every_step": log["loss"][::10]},
        "n_action_steps": nas,
        "delta_mask": list(DELTA_MASK),
        "evaluation": {"before": _summary(before), "after": _summary(after), "general": _summary(general)},
    }
