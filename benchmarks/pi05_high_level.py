"""pi0.5's high level, measured: when to think again, and what a perfect high level would give (notebook 07).

The ``pi05`` recipe evaluates its checkpoint thinking before every chunk (every ``n_action_steps`` control steps).
Here the same checkpoint runs on the first layouts of the same held-out seeds, each rollout with the same noise
(policy seed = layout seed), with the high level changed:

* ``every_step``: decode at every control step, and drop the rest of the queued chunk when the words change
  (re-plan "when the subtask text changes");
* ``every_16``: decode every 16 control steps (half a second), keep the words in between;
* ``oracle``: no decoding; the subtask the scene calls for (``oracle_subtask``, privileged sim state), given
  before every chunk. pi0.5's ablation has a human high level in this place.

    python benchmarks/pi05_high_level.py [--variants every_step every_16 oracle] [--tasks ...] [--episodes 20]

Success, subtasks completed, steps and decodes per episode go to ``data/results/pi05_high_level.json`` (one key
per variant and task, merged: several runs can fill it in turn).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vla_course.checkpoints import RESULTS_DIR, load_pretrained
from vla_course.models.policy import OracleHighLevel, Pi0Policy
from vla_course.recipes.pi05 import decode_counts

VARIANTS = {"every_step": {"think_every": 1}, "every_16": {"think_every": 16}, "oracle": {}}


def main() -> None:
    from vla_course.training.evaluate import evaluate_policy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="pi05")
    ap.add_argument("--root", default=None, help="checkpoint folder (default data/checkpoints)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--tasks", nargs="+", default=["clear_table", "two_in_order", "refer"])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--out", default=str(RESULTS_DIR / "pi05_high_level.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_pretrained(args.checkpoint, kind="Pi0", root=args.root).eval()
    results = {}
    for variant in args.variants:
        for task in args.tasks:
            cls = OracleHighLevel if variant == "oracle" else Pi0Policy
            policy = cls(model, **VARIANTS[variant])
            t0 = time.perf_counter()
            ev = evaluate_policy(policy, args.seed, args.episodes, task=task, noise_offset=0)
            rows = ev["episodes_detail"]
            results.setdefault(variant, {})[task] = {
                "success_rate": ev["success_rate"], "successes": ev["successes"], "episodes": ev["episodes"],
                "subtasks_completed": ev["subtasks_completed"], "subtask_accuracy": ev.get("subtask_accuracy"),
                "mean_steps": float(np.mean([r["steps"] for r in rows])),
                "decodes_per_episode": float(np.mean([len(r["thoughts"]) for r in rows])),
                "seconds": time.perf_counter() - t0, "episodes_detail": [decode_counts(r) for r in rows]}
            r = results[variant][task]
            print(f"{variant:10s} {task:12s} success {r['success_rate']:.0%}  subtasks {r['subtasks_completed']:.2f}  "
                  f"decodes/episode {r['decodes_per_episode']:.0f}  {r['seconds']:.0f} s", flush=True)
    out = Path(args.out)
    merged = json.loads(out.read_text()) if out.exists() else {}
    for variant, per_task in results.items():
        merged.setdefault("variants", {}).setdefault(variant, {}).update(per_task)
    merged.update({"checkpoint": args.checkpoint, "eval_seeds": f"{args.seed}..{args.seed + args.episodes - 1}",
                   "noise": "policy seed = layout seed (the same noise as the recipe's evaluation)",
                   "torch_threads": 1})
    merged.setdefault("commands", [])
    merged["commands"].append("python benchmarks/pi05_high_level.py --variants " + " ".join(args.variants)
                              + " --tasks " + " ".join(args.tasks) + f" --episodes {args.episodes}")
    out.write_text(json.dumps(merged, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
