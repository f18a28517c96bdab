"""Evaluation helpers the recipes (and notebooks) share: success in the sim, first-chunk agreement with the
expert, where the instruction keypoints land, the re-planning horizon, and chunk latency.

Every rollout goes through the real control loop (``vla_course.control.run_episode``) on held-out layout
seeds: the policy sees only the cameras, the joint state and the instruction, as on a real arm.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from vla_course.constants import CAMERAS, IMAGE_SIZE, JOINT_NAMES, STATE_KEY


def evaluate_policy(policy, seed: int, episodes: int, task: str = "pick_place", task_kwargs: dict | None = None,
                    progress: bool = True, render=None, noise_offset: int | None = None) -> dict:
    """Success of ``policy`` (``reset()``/``act(frame)``) over layout seeds ``seed .. seed+episodes-1``.

    Per episode it records the outcome, the steps, the number of cubes, the target, every cube the
    gripper held (tells "wrong cube" from "missed grasp") and the subtasks completed (targets binned in the
    task's order, ``task.progress``). A pi0.5 policy (``policy.hierarchical``, with its ``thoughts``) also gets each decoded subtask
    beside the one the scene called for at that moment (``oracle_subtask``). ``render(env) -> frame``
    records a video of each.

    ``noise_offset``: each episode's noise stream starts from its own seed, the layout seed plus this offset
    (``policy.seed``, read at ``reset``). A policy with one fixed seed restarts the *same* noise at every
    episode, so a lucky or unlucky stream moves every layout together (pi0_base on these layouts: 37/50 with
    policy seed 0, 19/50 with seed 1); with an offset the rate averages over noise as well as over tables.
    """
    from tqdm import tqdm  # a text bar: saved notebooks show its final state, not a stale "0%" widget

    from vla_course.control import run_episode
    from vla_course.robot import make_robot
    from vla_course.sim.expert import oracle_subtask

    cameras = tuple(getattr(policy, "cameras", CAMERAS))
    robot = make_robot("sim", task=task, seed=seed, image_size=IMAGE_SIZE, cameras=cameras, **(task_kwargs or {}))
    rows, videos = [], []
    with robot:
        for i in tqdm(range(episodes), desc="rollouts", disable=not progress):
            robot.reset(seed + i)
            if noise_offset is not None:
                policy.seed = seed + i + noise_offset  # Pi0Policy.reset (in run_episode) restarts from it
            env = robot.env
            if hasattr(policy, "bind_env"):  # a privileged policy (an oracle high level) reads the scene itself
                policy.bind_env(env)
            held: list[str] = []
            thinks = bool(getattr(policy, "hierarchical", False))
            words = getattr(policy, "subtask_words", "phase")
            oracle = [oracle_subtask(env.scene_state(), words)] if thinks else []  # oracle[k]: before step k's action

            def on_step(frame, action, env=env, held=held, oracle=oracle, words=words):
                cube = env.held_cube()
                if cube is not None and cube not in held:
                    held.append(cube)
                if thinks:
                    oracle.append(oracle_subtask(env.scene_state(), words))

            r = run_episode(robot, policy, on_step=on_step, render=(lambda: render(env)) if render else None)
            state = env.scene_state()
            row = {"seed": seed + i, **({"policy_seed": policy.seed} if noise_offset is not None else {}),
                   "success": bool(r.success), "steps": r.steps, "n_cubes": len(env.layout.cubes),
                   "target": env.layout.targets[0], "held": held, "instruction": r.instruction,
                   "subtasks_completed": env.task.progress(state), "subtasks_total": len(state["targets"])}
            if thinks:
                row["thoughts"] = [(k, text, oracle[k]) for k, text in policy.thoughts]
            rows.append(row)
            if render:
                videos.append(r.frames)
    succ = [r["success"] for r in rows]
    out = {"seed": seed, "episodes": episodes, "successes": int(sum(succ)),
           "success_rate": float(np.mean(succ)) if succ else 0.0, "task": task, "task_kwargs": task_kwargs or {},
           "subtasks_completed": float(np.mean([r["subtasks_completed"] for r in rows])) if rows else 0.0,
           "episodes_detail": rows}
    said = [t for r in rows for t in r.get("thoughts", [])]
    if said:
        out["subtask_accuracy"] = float(np.mean([text == want for _, text, want in said]))
    if render:
        out["videos"] = videos
    return out


def evaluate_pi0(model, seed: int, episodes: int, n_action_steps: int | None = None, task: str = "pick_place",
                 task_kwargs: dict | None = None, progress: bool = True, render=None, policy_seed: int = 0,
                 think_every: int | None = None, noise_offset: int | None = None) -> dict:
    """:func:`evaluate_policy` of a :class:`~vla_course.models.Pi0` (re-planning every ``n_action_steps``;
    default the model's own ``config.n_action_steps``; ``think_every`` for pi0.5 models, see ``Pi0Policy``;
    ``noise_offset``: every episode its own noise, see :func:`evaluate_policy`)."""
    from vla_course.models import Pi0Policy

    policy = Pi0Policy(model, n_action_steps=n_action_steps, seed=policy_seed, think_every=think_every)
    out = evaluate_policy(policy, seed, episodes, task, task_kwargs, progress, render, noise_offset)
    out["n_action_steps"] = policy.n_action_steps
    return out


def first_chunk_agreement(model, seeds, samples: int = 8) -> dict:
    """Does the policy's *first* chunk go where the expert's first H actions go?

    At the first frame every episode starts from the same arm pose, so the state says nothing: only the
    cameras and the instruction can tell the policy where the named cube is. For each layout seed we
    compare the joint change over one chunk (last action minus the start state): the expert's (run for
    H steps) against the policy's (mean of ``samples`` sampled chunks). Per joint it returns the least-squares
    ``gain`` (1 = the right amount, 0 = the same move whatever the scene) and the correlation ``corr``.
    """
    from vla_course.models import Pi0Policy
    from vla_course.policies import ExpertPolicy
    from vla_course.robot import action_array_to_dict, make_robot, observation_to_frame

    seeds = list(seeds)
    h = model.config.chunk_size
    expert_moves, policy_moves = [], []
    with make_robot("sim", seed=seeds[0]) as robot:
        for s in seeds:
            robot.reset(s)
            f0 = observation_to_frame(robot.get_observation(), robot.instruction)
            batch = Pi0Policy(model).frame_to_batch(f0)
            batch = {k: (v.expand(samples, *v.shape[1:]) if torch.is_tensor(v) else v * samples)
                     for k, v in batch.items()}
            noise = torch.randn(samples, h, model.config.action_dim, generator=torch.Generator().manual_seed(s))
            last = model.sample_actions(batch, noise=noise)[:, -1].mean(0)  # absolute targets
            policy_moves.append((last - torch.as_tensor(f0[STATE_KEY])).numpy())
            expert = ExpertPolicy(robot)
            expert.reset()
            for _ in range(h):
                a = expert.act(observation_to_frame(robot.get_observation(), robot.instruction))
                robot.send_action(action_array_to_dict(a))
            expert_moves.append(a - f0[STATE_KEY])
    return move_agreement(np.array(expert_moves), np.array(policy_moves))


def move_agreement(expert: np.ndarray, policy: np.ndarray) -> dict:
    """Per arm joint: least-squares ``gain`` of the policy's moves on the expert's (N, D) (centred), their
    correlation, and the spread of the expert's moves."""
    out = {}
    for j, name in enumerate(JOINT_NAMES[:5]):
        ec = expert[:, j] - expert[:, j].mean()
        gain = float((ec * (policy[:, j] - policy[:, j].mean())).sum() / max((ec ** 2).sum(), 1e-9))
        out[name] = {"gain": gain, "corr": float(np.corrcoef(expert[:, j], policy[:, j])[0, 1]),
                     "expert_std_deg": float(expert[:, j].std())}
    return out


def instruction_keypoint_accuracy(model, seeds) -> dict:
    """Does instruction keypoint 0 land on the named cube? On the first frame of each layout, per camera:
    how often the cube nearest to the keypoint is the named one (among the cubes in view), and the median
    distance to the named cube in pixels. Chance is about one in the number of cubes."""
    from vla_course.models import Pi0Policy
    from vla_course.robot import make_robot, observation_to_frame

    seeds, vis = list(seeds), model.vlm.vision
    if not vis.instruction_keypoints:
        raise ValueError("this model has no instruction keypoints (VLMConfig.instruction_keypoints = 0)")
    hits = {cam: [] for cam in model.vlm.config.cameras}
    dists = {cam: [] for cam in hits}
    with make_robot("sim", seed=seeds[0]) as robot:
        for s in seeds:
            robot.reset(s)
            env = robot.env
            batch = Pi0Policy(model).frame_to_batch(observation_to_frame(robot.get_observation(), robot.instruction))
            with torch.no_grad():
                model.embed_prefix(batch)
            for c, cam in enumerate(hits):
                px = (vis.instruction_xy[0, c, 0].numpy() + 1) / 2 * (IMAGE_SIZE - 1)
                d = {name: float(np.linalg.norm(px - env.project(env.cube_pos(name), cam, IMAGE_SIZE)))
                     for name in env.layout.cubes}
                d = {k: v for k, v in d.items() if np.isfinite(v)}
                target = env.layout.targets[0]
                if target in d:
                    hits[cam].append(min(d, key=d.get) == target)
                    dists[cam].append(d[target])
    return {cam: {"nearest_is_named": int(sum(hits[cam])), "frames": len(hits[cam]),
                  "median_px": float(np.median(dists[cam])) if dists[cam] else float("nan")} for cam in hits}


def choose_n_action_steps(model, seed: int, episodes: int, candidates=(4, 8), progress: bool = True
                          ) -> tuple[int, dict]:
    """Pick the re-planning horizon on validation seeds ``seed..`` (neither trained on nor the held-out test
    seeds). Ties go to the longer horizon (fewer chunks to compute). With ``episodes=0`` nothing is measured
    and the model's current ``config.n_action_steps`` stays."""
    if episodes <= 0:
        return model.config.n_action_steps, {}
    results = {n: evaluate_pi0(model, seed, episodes, n_action_steps=n, progress=progress)["successes"]
               for n in candidates}
    best = max(results, key=lambda n: (results[n], n))
    return best, {"seeds": f"{seed}..{seed + episodes - 1}", "episodes": episodes,
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


def by_cubes(ev: dict) -> dict:
    """Successes by number of cubes on the table, e.g. ``{"3": "14/19", ...}``."""
    out = {}
    for r in ev["episodes_detail"]:
        out.setdefault(str(r["n_cubes"]), []).append(r["success"])
    return {k: f"{sum(v)}/{len(v)}" for k, v in sorted(out.items())}


def summary(ev: dict) -> dict:
    """Evaluation results without the videos, for metadata.json."""
    return {k: v for k, v in ev.items() if k != "videos"}
