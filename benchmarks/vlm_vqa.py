"""How well does the shipped ``vlm_base`` answer questions about SO-100 scenes it never saw?

It renders fresh held-out scenes (a seed range used neither by training nor by the recipe's own
held-out set), asks all 8 question kinds about each, and prints exact-match accuracy per kind.

    python benchmarks/vlm_vqa.py [--scenes 300] [--seed 7000]
"""

from __future__ import annotations

import argparse
import time

import torch

from vla_course.checkpoints import load_pretrained, read_metadata
from vla_course.data.vqa import QUESTION_KINDS, generate_vqa
from vla_course.eval_vqa import evaluate_vqa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    vlm = load_pretrained("vlm_base", kind="TinyVLM").eval()
    meta = read_metadata("vlm_base")
    held = generate_vqa(args.scenes, split="heldout", seed=args.seed)
    t = time.perf_counter()
    scores = evaluate_vqa(vlm, held, progress=True)
    secs = time.perf_counter() - t
    print(f"vlm_base ({meta['data']['train_scenes']} training scenes, {meta['steps']} steps): "
          f"{scores['num_questions']} questions on {scores['num_scenes']} fresh held-out scenes, "
          f"answered in {secs:.1f} s")
    for k in QUESTION_KINDS:
        print(f"  {k:<12s} {scores['per_kind'][k]:6.1%}")
    print(f"  {'overall':<12s} {scores['overall']:6.1%}")


if __name__ == "__main__":
    main()
