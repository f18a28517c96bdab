"""Compounding errors measured: how far each policy's states drift from the scripted expert's, side by side.

Every policy acts on the same held-out layouts (seeds 10000..), each with the same policy seed; each step's
drift is the distance (cm) from the gripper's grasp point to the nearest point of the expert's path on that layout
(``vla_course.training.compounding``). Written to ``data/results/compounding.json`` (read by notebook 08):
per policy, per episode the drift (every step), success, grasps and drift onset, and the mean drift of the
episodes still running at each step.

    python benchmarks/compounding.py --root /tmp/cmp_runs [--episodes 20]   # pi0_bc50, pi0_dagger50 from --root
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vla_course.checkpoints import RESULTS_DIR, load_pretrained, read_metadata
from vla_course.models import Pi0Policy
from vla_course.training.compounding import ONSET_CM, rollout_drift, running_mean_drift


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="where pi0_bc50 and pi0_dagger50 were trained (default data/checkpoints)")
    ap.add_argument("--names", nargs="+", default=["pi0_bc50", "pi0_dagger50", "pi0_base"])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--out", default=str(RESULTS_DIR / "compounding.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {"command": f"python benchmarks/compounding.py --root <where they trained> --names {' '.join(args.names)} "
                      f"--episodes {args.episodes} --seed {args.seed}",
           "seeds": f"{args.seed}..{args.seed + args.episodes - 1}", "onset_cm": ONSET_CM,
           "measure": "cm from the grasp point to the nearest point of the scripted expert's path on the same layout", "policies": {}}
    for name in args.names:
        root = None if name == "pi0_base" else args.root
        model = load_pretrained(name, kind="Pi0", root=root).eval()
        meta = read_metadata(name, root=root)
        t = time.perf_counter()
        rows = rollout_drift(Pi0Policy(model, seed=0), args.seed, args.episodes)
        horizon = max(r["steps"] for r in rows)
        out["policies"][name] = {
            "episodes": [{**r, "drift": [round(float(x), 2) for x in r["drift"]]} for r in rows],
            "success_rate": float(np.mean([r["success"] for r in rows])),
            "running_mean_drift": [None if np.isnan(x) else round(float(x), 2) for x in running_mean_drift(rows, horizon)],
            "training": {"episodes": meta["data"]["episodes"], "steps": meta["training"]["steps"],
                         "command": meta["command"]},
            "seconds": time.perf_counter() - t}
        p = out["policies"][name]
        print(f"{name:>13}: success {p['success_rate']:.0%}, "
              f"median drift {np.median([x for r in rows for x in r['drift']]):.1f} cm ({p['seconds']:.0f} s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
