"""Where pi0.5's high level goes wrong: at the moments it has to decide.

``pi05``'s high level scores well on the expert's own frames yet poorly in its own rollouts. This measures why,
on the scripted expert's recordings of the held-out layouts (``--episodes`` per multi-step task, seeds 10000..):
the high level decodes the subtask of every ``--stride``-th frame, scored against the expert's label, split by
where the frame sits in its subtask segment:

* ``decision``: the first ``--window`` frames of a segment (the episode's first frame, or just after a cube was
  let go). The arm is at rest or leaving the bin: nothing in the picture but the cubes says which one is next;
* ``underway``: the rest of the segment. The arm is already reaching for, holding or carrying the cube, so the
  arm itself gives the answer away.

A high level that reads the arm's heading instead of the table (a shortcut: "causal confusion" in imitation
learning, de Haan et al. 2019) is right underway and wrong at the decisions. In a rollout that is where
it matters: a wrong first decision sends the arm to a wrong cube, and from then on the arm "confirms" it.

    python benchmarks/pi05_decision_points.py [--checkpoint pi05] [--episodes 20]

Writes ``data/results/pi05_decision_points.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vla_course.checkpoints import RESULTS_DIR, load_pretrained
from vla_course.models.subtask import segment_positions
from vla_course.sim.expert import instruction_subtasks

TASKS = ("clear_table", "two_in_order", "refer")


def main() -> None:
    from vla_course.recipes.finetune import recording, robot_chunks_of

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="pi05")
    ap.add_argument("--root", default=None, help="checkpoint folder (default data/checkpoints)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--out", default=str(RESULTS_DIR / "pi05_decision_points.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_pretrained(args.checkpoint, kind="Pi0", root=args.root).eval()
    t0 = time.perf_counter()
    results = {}
    for task in TASKS:
        root = recording(task, args.seed, args.episodes, progress=False)
        d = robot_chunks_of([(root, task, args.seed, {})], False)
        labels = instruction_subtasks(d.subtasks, d.episode_index.tolist())
        ep = d.episode_index.numpy()
        pos = segment_positions(labels, ep)
        idx = np.arange(0, len(d), args.stride)
        said = []
        with torch.inference_mode():
            for i in range(0, len(idx), 64):
                said += model.decode_subtask(d.batch(torch.as_tensor(idx[i:i + 64])))
        right = np.array([s == labels[k] for s, k in zip(said, idx)])
        decision = pos[idx] < args.window
        row = {"frames_scored": int(len(idx)), "episodes": int(len(np.unique(ep))),
               "accuracy_all": float(right.mean()),
               "accuracy_decision": float(right[decision].mean()), "decision_frames": int(decision.sum()),
               "accuracy_underway": float(right[~decision].mean()), "underway_frames": int((~decision).sum()),
               "accuracy_segment_first_frame": float(right[pos[idx] == 0].mean())}
        results[task] = row
        print(task, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    out = {"checkpoint": args.checkpoint, "root": args.root, "layout_seeds": f"{args.seed}..{args.seed + args.episodes - 1}",
           "data": "the scripted expert's recordings of those layouts (vla_course.recipes.finetune.recording)",
           "stride": args.stride, "decision_window_frames": args.window, "per_task": results,
           "seconds": time.perf_counter() - t0, "torch_threads": 1,
           "command": f"python benchmarks/pi05_decision_points.py --checkpoint {args.checkpoint} "
                      f"--episodes {args.episodes}" + (f" --root {args.root}" if args.root else "")}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
