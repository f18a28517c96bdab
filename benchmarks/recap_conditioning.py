"""What the advantage prompt does to one RECAP policy: asked for positive, negative or nothing, and with
classifier-free guidance (pi*0.6: beta = 1 by default, 1.5..2.5 optional; a high beta makes motion aggressive).

The same ``recap`` checkpoint on the same held-out layouts (10000..), each condition one after the other in one
run, each layout with its own noise (policy seed = layout seed, as benchmarks/recap_policies.py): success,
mean steps to finish, throughput, and how fast the arm moves (the mean speed of the five arm joints,
degrees per second, from the observed state). Written to ``data/results/recap_conditioning.json`` (notebook 08).

    python benchmarks/recap_conditioning.py [--episodes 20] [--betas 1.5 2.5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vla_course.checkpoints import RESULTS_DIR, load_pretrained
from vla_course.constants import STATE_KEY


class MotionMeter:
    """Wraps a policy and keeps each step's arm speed (mean |change of the five arm joints| x fps, deg/s)."""

    def __init__(self, policy, fps: int = 30):
        self.policy, self.fps, self.speeds = policy, fps, []
        self.cameras = getattr(policy, "cameras", ())
        self._last = None

    @property
    def seed(self):  # evaluate_policy(noise_offset=...) sets each episode's noise seed on the policy it holds
        return self.policy.seed

    @seed.setter
    def seed(self, value) -> None:
        self.policy.seed = value

    def reset(self) -> None:
        self.policy.reset()
        self._last = None

    def act(self, frame: dict) -> np.ndarray:
        state = np.asarray(frame[STATE_KEY], dtype=np.float64)[:5]
        if self._last is not None:
            self.speeds.append(float(np.abs(state - self._last).mean() * self.fps))
        self._last = state
        return self.policy.act(frame)


def main() -> None:
    from vla_course.models import Pi0Policy
    from vla_course.recap.advantage import NEGATIVE, POSITIVE
    from vla_course.recipes.recap import outcome
    from vla_course.training.evaluate import evaluate_policy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="recap")
    ap.add_argument("--root", default=None, help="checkpoint folder (default data/checkpoints)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--betas", type=float, nargs="*", default=[1.5, 2.5])
    ap.add_argument("--out", default=str(RESULTS_DIR / "recap_conditioning.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_pretrained(args.checkpoint, kind="Pi0", root=args.root).eval()
    conditions = {"positive": (POSITIVE, None), "negative": (NEGATIVE, None), "none": (None, None),
                  **{f"positive, CFG beta {b:g}": (POSITIVE, b) for b in args.betas}}
    where = (f" --checkpoint {args.checkpoint}" if args.checkpoint != "recap" else "") + \
        (f" --root {args.root}" if args.root else "")
    out = {"command": f"python benchmarks/recap_conditioning.py{where} --episodes {args.episodes} --seed {args.seed} "
                      f"--betas {' '.join(f'{b:g}' for b in args.betas)}",
           "checkpoint": args.checkpoint, "noise": "policy seed = layout seed (evaluate_policy noise_offset=0)",
           "seeds": f"{args.seed}..{args.seed + args.episodes - 1}", "conditions": {}}
    for name, (condition, beta) in conditions.items():
        t = time.perf_counter()
        meter = MotionMeter(Pi0Policy(model, seed=0, condition=condition, guidance=beta))
        ev = evaluate_policy(meter, args.seed, args.episodes, progress=True, noise_offset=0)
        row = {**outcome(ev), "condition": condition, "guidance": beta,
               "mean_arm_speed_deg_s": float(np.mean(meter.speeds)), "seconds": time.perf_counter() - t}
        out["conditions"][name] = row
        finish = f"{row['mean_steps_to_finish']:.0f}" if row["mean_steps_to_finish"] else "-"
        print(f"{name:>24}: success {row['success_rate']:.0%}, steps to finish {finish}, throughput "
              f"{row['throughput_per_hour']:.0f}/h, arm {row['mean_arm_speed_deg_s']:.1f} deg/s ({row['seconds']:.0f} s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
