"""Does Knowledge Insulation act as fast as pi0? The shipped ``pi0_ki`` against ``pi0_base``, side by side.

Both act the same way (the prefix once, then 10 cached Euler steps of the action expert; KI's FAST tokens are
never decoded), but KI's prefix also holds the state as words. The target is a ratio: pi0_ki within 10% of
pi0_base. Both are timed in one run, in interleaved rounds, on one thread, on the same first frame of a
held-out layout, so a busy moment of the machine hits both alike.

    python benchmarks/ki_latency.py [--rounds 5] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from vla_course.checkpoints import load_pretrained
from vla_course.robot import make_robot, observation_to_frame
from vla_course.training.evaluate import chunk_latency_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=10_000, help="held-out layout whose first frame is timed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = {name: load_pretrained(name, kind="Pi0") for name in ("pi0_base", "pi0_ki")}
    with make_robot("sim", seed=args.seed) as robot:
        frame = observation_to_frame(robot.get_observation(), robot.instruction)
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name].append(chunk_latency_ms(model, frame, runs=args.runs)["median_ms"])
    med = {name: statistics.median(v) for name, v in times.items()}
    for name, v in times.items():
        print(f"{name:>9}: {med[name]:6.2f} ms per chunk (median of {args.rounds} rounds x {args.runs}; "
              f"rounds {min(v):.2f}..{max(v):.2f})")
    ratio = med["pi0_ki"] / med["pi0_base"]
    print(f"pi0_ki / pi0_base = {ratio:.3f} ({'within' if ratio <= 1.10 else 'NOT within'} 10%)")


if __name__ == "__main__":
    main()
