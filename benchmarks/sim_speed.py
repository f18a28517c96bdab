"""How fast is the simulated SO-100 world on this machine?

Prints, for the ``pick_place`` task driven by the scripted expert:

1. physics + expert without rendering (``cameras=()``): control steps per second
   and the real-time factor (30 control steps = 1 s of robot time; target >= 10x);
2. the same with ``front`` + ``wrist`` rendered at 96x96 every step: steps/s,
   frames/s and real-time factor (target >= 2x);
3. rendering alone at 96 px and at 256 px (demo-video size);
4. the expert's success rate over seeds 0..N-1 (default 100), plus success with
   each of the imperfect-data knobs on a smaller set of seeds;
5. the expert on the multi-step tasks of the pi0.5 chapter (clear_table, two_in_order, refer;
   target >= 95% each): success, mean episode length and subtasks per episode.

Usage:  python benchmarks/sim_speed.py [--episodes 100] [--render-episodes 5] [--task-episodes 100]
        python benchmarks/sim_speed.py --only-tasks     # section 5 only
Timings on a shared 2-core laptop CPU are noisy: run twice before concluding.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vla_course.constants import FPS
from vla_course.sim import make_env
from vla_course.sim.expert import ScriptedExpert


def run_episodes(env, seeds, **expert_kwargs):
    """Run expert episodes; return (successes, total control steps, seconds)."""
    expert = ScriptedExpert(env, **expert_kwargs)
    successes, steps = 0, 0
    start = time.perf_counter()
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        expert.reset()
        while True:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            steps += 1
            if terminated or truncated:
                break
        successes += bool(info["success"])
    return successes, steps, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100, help="expert episodes for the success rate")
    parser.add_argument("--render-episodes", type=int, default=5, help="episodes with front+wrist rendering")
    parser.add_argument("--mistake-episodes", type=int, default=20, help="episodes per mistake knob")
    parser.add_argument("--task-episodes", type=int, default=100, help="expert episodes per multi-step task")
    parser.add_argument("--only-tasks", action="store_true", help="run only the multi-step tasks (section 5)")
    args = parser.parse_args()
    if not args.only_tasks:
        speed(args)
    multistep(args.task_episodes)


def multistep(episodes: int) -> None:
    """The scripted expert on the pi0.5 chapter's tasks, layout seeds 0..episodes-1, no rendering."""
    for task in ("clear_table", "two_in_order", "refer"):
        env = make_env(task=task, seed=0, cameras=())
        expert = ScriptedExpert(env)
        ok, lengths, subtasks = 0, [], []
        for seed in range(episodes):
            obs, _ = env.reset(seed=seed)
            expert.reset()
            labels, steps = [], 0
            while True:
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                steps += 1
                if not labels or labels[-1] != expert.subtask:
                    labels.append(expert.subtask)
                if terminated or truncated:
                    break
            ok += bool(info["success"])
            lengths.append(steps)
            subtasks.append(len(labels))
        env.close()
        print(f"expert on {task:<13}: {ok}/{episodes} = {100.0 * ok / episodes:.1f}% (seeds 0..{episodes - 1}), "
              f"mean {np.mean(lengths):.0f} steps (max {max(lengths)}), {np.mean(subtasks):.1f} subtask labels "
              "per episode")


def speed(args) -> None:
    # 1. No rendering: physics + IK expert (this is also the success-rate run).
    env = make_env(task="pick_place", seed=0, cameras=())
    ok, steps, secs = run_episodes(env, range(args.episodes))
    print(f"expert, no rendering : {steps / secs:8.0f} steps/s  = {steps / secs / FPS:6.1f}x real time "
          f"({steps} steps, {secs:.1f} s, mean episode {steps / args.episodes:.0f} steps)")
    print(f"expert success rate  : {ok}/{args.episodes} = {100.0 * ok / args.episodes:.1f}% "
          f"(seeds 0..{args.episodes - 1})")
    for kwargs in ({"mistake": "fumble"}, {"mistake": "drop"}, {"mistake": "drop", "recover": False},
                   {"noise_std": 2.0}):
        k_ok, _, _ = run_episodes(env, range(args.mistake_episodes), **kwargs)
        print(f"  with {kwargs}: {k_ok}/{args.mistake_episodes} succeed")
    env.close()

    # 2. Rendering both cameras at 96 px into every observation.
    env = make_env(task="pick_place", seed=0, image_size=96, cameras=("front", "wrist"))
    ok, steps, secs = run_episodes(env, range(args.render_episodes))
    print(f"expert + front+wrist @96px: {steps / secs:6.0f} steps/s, {2 * steps / secs:6.0f} frames/s "
          f"= {steps / secs / FPS:5.1f}x real time ({steps} steps, {ok}/{args.render_episodes} succeed)")

    # 3. Rendering alone.
    env.reset(seed=0)
    for size in (96, 256):
        env.render("front", size)  # create the renderer outside the timing
        n = 200 if size == 96 else 60
        start = time.perf_counter()
        for i in range(n):
            env.render("front" if i % 2 else "wrist", size)
        fps = n / (time.perf_counter() - start)
        print(f"render only @{size}px    : {fps:6.0f} frames/s")
    env.close()

    # 4. Shadows on, for comparison (prettier, slower).
    env = make_env(task="pick_place", seed=0, image_size=96, cameras=(), shadows=True)
    env.render("front", 96)
    start = time.perf_counter()
    for i in range(100):
        env.render("front" if i % 2 else "wrist", 96)
    print(f"render @96px, shadows: {100 / (time.perf_counter() - start):6.0f} frames/s")
    env.close()
    print(f"(numpy {np.__version__}; timings on a shared CPU are noisy)")


if __name__ == "__main__":
    main()
