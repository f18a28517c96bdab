"""The value function measured on episodes it never trained on: its rank correlation and its fall after a drop.

Held-out layouts only (never recorded for training), each episode run live and scored frame by frame with
``load_value_function(name)`` (notebook 08, section 3):

* ``pi0_base`` acting alone on layouts 10000.. (success or failure as the sim says);
* the scripted expert dropping the cube in mid-transport, then recovering (layouts 45000..) or giving up
  (45100..), and fumbling its first grasp, then recovering (45200..).

Measured, against the true normalised return G_t (``vla_course.recap.mc_returns``):

* the rank correlation (Spearman) of V with G over the frames of the held-out *successful* episodes (pooled, and
  per group: for a success, ranking by G is ranking by steps to go; a recovered drop's success is one V could not
  foresee, so its frames rank worse), and over every frame;
* at each drop (the step the expert opens the gripper): does V fall within a second (30 steps)? "Falls": the
  lowest V of the next second lies below V at the drop. Beside it, the mean change of V over one second at
  every step of the successful pi0_base episodes (progress: V rises by about 30 / (2 x 360) per second).

Written to ``data/results/value_curves.json`` (per episode: V and G every step, the drop step; the metrics).

    python benchmarks/value_curves.py [--episodes 20] [--mistakes 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vla_course.checkpoints import RESULTS_DIR, load_pretrained, read_metadata
from vla_course.recap import spearman
from vla_course.training.value_curves import SECOND, falls_after, value_curve


def main() -> None:
    from vla_course.models import Pi0Policy
    from vla_course.policies import ExpertPolicy
    from vla_course.recap import load_value_function

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--value", default="value_so100")
    ap.add_argument("--root", default=None, help="checkpoint folder (default data/checkpoints)")
    ap.add_argument("--episodes", type=int, default=20, help="pi0_base episodes (layouts 10000..)")
    ap.add_argument("--mistakes", type=int, default=10, help="expert episodes of each mistake kind")
    ap.add_argument("--out", default=str(RESULTS_DIR / "value_curves.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    value = load_value_function(args.value, root=args.root)
    meta = read_metadata(args.value, root=args.root)
    max_steps = meta["config"]["max_steps"]
    base = load_pretrained("pi0_base", kind="Pi0").eval()
    groups = {
        "pi0_base": (10_000, args.episodes, lambda robot, s: Pi0Policy(base, seed=s), None),
        "drop_recover": (45_000, args.mistakes, lambda robot, s: ExpertPolicy(robot, mistake="drop", seed=s), "dropped"),
        "drop_giveup": (45_100, args.mistakes,
                        lambda robot, s: ExpertPolicy(robot, mistake="drop", recover=False, seed=s), "dropped"),
        "fumble_recover": (45_200, args.mistakes, lambda robot, s: ExpertPolicy(robot, mistake="fumble", seed=s), None),
    }
    episodes = {}
    from tqdm.auto import tqdm

    for name, (first, n, make, phase) in groups.items():
        episodes[name] = [value_curve(value, lambda robot, s=first + i: make(robot, s), first + i, max_steps,
                                      mistake_phase=phase) for i in tqdm(range(n), desc=name)]
    ok = [e for eps in episodes.values() for e in eps if e["success"]]
    every = [e for eps in episodes.values() for e in eps]
    drops = [(e, *falls_after(e["value"], e["mistake_at"])) for k in ("drop_recover", "drop_giveup")
             for e in episodes[k] if e["mistake_at"] is not None]
    progress = [e["value"][SECOND:] - e["value"][:-SECOND] for e in episodes["pi0_base"] if e["success"]]
    metrics = {
        "spearman_successful": spearman(np.concatenate([e["value"] for e in ok]), np.concatenate([e["return"] for e in ok])),
        "spearman_successful_per_episode_median": float(np.median([spearman(e["value"], e["return"]) for e in ok])),
        "spearman_successful_by_group": {k: spearman(np.concatenate([e["value"] for e in v if e["success"]]),
                                                      np.concatenate([e["return"] for e in v if e["success"]]))
                                         for k, v in episodes.items() if any(e["success"] for e in v)},
        "spearman_all": spearman(np.concatenate([e["value"] for e in every]), np.concatenate([e["return"] for e in every])),
        "mean_abs_error": float(np.mean(np.abs(np.concatenate([e["value"] - e["return"] for e in every])))),
        "successful_episodes": len(ok), "episodes": len(every),
        "drops": len(drops), "drops_followed_by_a_fall": int(sum(f for _, f, _ in drops)),
        "mean_value_change_second_after_drop": float(np.mean([d for _, _, d in drops])) if drops else None,
        "mean_value_change_per_second_successful_pi0_base": float(np.concatenate(progress).mean()) if progress else None,
        "success_by_group": {k: float(np.mean([e["success"] for e in v])) for k, v in episodes.items()},
    }
    out = {"command": f"python benchmarks/value_curves.py --episodes {args.episodes} --mistakes {args.mistakes}",
           "value": args.value, "max_steps": max_steps, "window_steps": SECOND,
           "layouts": {k: f"{f}..{f + n - 1}" for k, (f, n, _, _) in groups.items()},
           "metrics": metrics, "seconds": time.perf_counter() - t0,
           "episodes": {k: [{**{a: b for a, b in e.items() if a not in ("value", "return", "held")},
                             "value": [round(float(x), 4) for x in e["value"]],
                             "return": [round(float(x), 4) for x in e["return"]]} for e in v]
                        for k, v in episodes.items()}}
    for k, v in metrics.items():
        print(f"{k}: {v}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out))
    print("wrote", args.out, f"({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
