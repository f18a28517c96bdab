"""Does the shipped pi0-in-miniature do the task? Success rate, parameters and ms per chunk.

    python benchmarks/pi0_success.py [--checkpoint pi0_base] [--episodes 50] [--seed 10000]

* success rate on held-out layout seeds (10000.. are never recorded for training):
  "put the <colour> cube in the bin" with 3-5 cubes, through the real control loop
  (the policy sees the two 96x96 cameras, the joint state and the instruction);
* parameter counts (backbone, action expert, ...);
* milliseconds per action chunk at batch 1 (prefix once + 10 cached Euler steps), 1 thread.

Targets (issue 4): >= 80% success on 50 held-out seeds, <= 10 ms per chunk on 2 CPU cores.
On a shared machine the timing is noisy: read the median and p10.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="pi0_base")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--n-action-steps", type=int, default=None, help="default: the checkpoint's config")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from vla_course.checkpoints import load_pretrained, read_metadata
    from vla_course.models import format_parameters
    from vla_course.training.evaluate import by_cubes, chunk_latency_ms, evaluate_pi0
    from vla_course.robot import make_robot
    from vla_course.robot import observation_to_frame

    model = load_pretrained(args.checkpoint, kind="Pi0")
    meta = read_metadata(args.checkpoint)
    n_action_steps = args.n_action_steps or model.config.n_action_steps
    print(f"checkpoint {args.checkpoint} ({meta['recipe']}, seed {meta['seed']}); parameters:")
    print(format_parameters(model))

    t0 = time.perf_counter()
    ev = evaluate_pi0(model, args.seed, args.episodes, n_action_steps=n_action_steps, progress=not args.json)
    wall = time.perf_counter() - t0
    robot = make_robot("sim", seed=args.seed)
    with robot:
        frame = observation_to_frame(robot.get_observation(), robot.instruction)
    lat = chunk_latency_ms(model, frame, runs=100, warmup=10)
    report = {"checkpoint": args.checkpoint, "episodes": args.episodes,
              "seeds": f"{args.seed}..{args.seed + args.episodes - 1}", "successes": ev["successes"],
              "success_rate": ev["success_rate"], "by_n_cubes": by_cubes(ev), "n_action_steps": n_action_steps,
              "ms_per_chunk_median": round(lat["median_ms"], 2), "ms_per_chunk_p10": round(lat["p10_ms"], 2),
              "parameters": sum(p.numel() for p in model.parameters()), "eval_seconds": round(wall, 1)}
    if args.json:
        print(json.dumps(report))
        return
    print(f"success: {ev['successes']}/{args.episodes} = {ev['success_rate']:.0%} on held-out seeds "
          f"{report['seeds']} (by number of cubes: {report['by_n_cubes']}), {wall:.0f} s")
    print(f"ms per chunk (10 Euler steps, prefix cached, 1 thread): median {lat['median_ms']:.2f}, "
          f"p10 {lat['p10_ms']:.2f}")
    print(f"targets: success >= 80%: {'met' if ev['success_rate'] >= 0.8 else 'NOT met'}; "
          f"<= 10 ms per chunk: {'met' if lat['median_ms'] <= 10 else 'NOT met (median)'}")


if __name__ == "__main__":
    main()
