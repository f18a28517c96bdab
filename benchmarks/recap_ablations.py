"""Why every RECAP fine-tune ends below pi0_base: the recipes again, one part of the data or one choice changed.

Notebook 08's table: every recipe that fine-tunes ``pi0_base`` on the chapter's data ends below it, BC on the
demonstrations alone included. Each ablation below is a shipped recipe (``vla_course/recipes/recap.py``) with
one field of ``RecapRecipe`` changed, trained and evaluated exactly as the recipe does (the same start, steps,
batch and lr; 50 held-out layouts 10000.., policy seed = layout seed)::

    clean_demos        recap_bc_demos on pi0_base's 150 clean demonstrations only (no expert mistakes)
    no_mistakes        recap_bc_all without the expert's fumble/drop demonstrations (rollouts, corrections kept)
    recap_no_mistakes  recap on no_mistakes' data: RECAP against BC on all of it, pi*0.6's kind of data
    recap_full_return  recap with pi*0.6's pre-training advantage, A_t = G_t - V(o_t) (n_step=None)

    python benchmarks/recap_ablations.py [--only clean_demos no_mistakes] [--root outputs/recap_ablations]

Each run lives in ``<root>/<ablation>/<recipe>`` beside copies of ``pi0_base`` and ``value_so100``; a run whose
saved config already equals the ablation's is read, not repeated (about 6 CPU-minutes each on one thread, the
recordings come from the recipes' cache). The rows are merged into ``data/results/recap_ablations.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from vla_course.checkpoints import CHECKPOINT_DIR, RESULTS_DIR

ABLATIONS = {  # name: (recipe, the RecapRecipe fields it changes, what it asks)
    "clean_demos": ("recap_bc_demos", {"demos": ((0, 150, 0.0),), "mistake_demos": ()},
                    "does fine-tuning on pi0_base's own clean demonstrations alone keep pi0_base's success?"),
    "no_mistakes": ("recap_bc_all", {"mistake_demos": ()},
                    "do the expert's deliberate mistakes among the demonstrations pull BC on all data down?"),
    "recap_no_mistakes": ("recap", {"mistake_demos": ()},
                          "on the data without the mistakes (pi*0.6's own kind: demonstrations, rollouts, "
                          "corrections), does recap beat no_mistakes' BC on all of it?"),
    "recap_full_return": ("recap", {"n_step": None},
                          "does the full-return advantage G_t - V(o_t) (fewer noisy labels) lift recap?"),
}
KEYS = ("success_rate", "successes", "episodes", "mean_steps", "mean_steps_to_finish", "throughput_per_hour",
        "failure_modes", "final_loss")


def run(name: str, root: Path) -> dict:
    from vla_course.recipes.recap import RecapRecipe
    from vla_course.train import _jsonable, run_recipe

    recipe, changes, question = ABLATIONS[name]
    variant = recipe.removeprefix("recap_") if recipe != "recap" else "recap"
    cfg = RecapRecipe(variant=variant, **changes)
    where = root / name
    meta_path = where / recipe / "metadata.json"
    want = json.loads(json.dumps(_jsonable(dataclasses.asdict(cfg))))  # as saved
    if not (meta_path.exists() and json.loads(meta_path.read_text()).get("config") == want):
        for base in ("pi0_base", "value_so100"):
            if not (where / base).exists():
                shutil.copytree(CHECKPOINT_DIR / base, where / base)
        run_recipe(recipe, seed=0, root=where, config=cfg)
    meta = json.loads(meta_path.read_text())
    m = meta["metrics"]
    row = {k: m[k] for k in KEYS}
    if "advantage" in m:
        row["advantage"] = m["advantage"]
    return {"recipe": recipe, "changes": {k: _jsonable(v) for k, v in changes.items()}, "question": question,
            **row, "train_seconds": meta["train_seconds"], "eval_seconds": meta["eval_seconds"],
            "data_sizes": meta["data_sizes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(ABLATIONS), default=list(ABLATIONS))
    ap.add_argument("--root", default="outputs/recap_ablations")
    ap.add_argument("--out", default=str(RESULTS_DIR / "recap_ablations.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    merged = json.loads(out.read_text()) if out.exists() else {}
    for name in args.only:
        row = run(name, Path(args.root))
        merged.setdefault("ablations", {})[name] = row
        print(f"{name:18s} {row['recipe']:15s} success {row['success_rate']:.0%}  "
              f"throughput {row['throughput_per_hour']:.0f}/h  failures {row['failure_modes']}", flush=True)
        merged.update({"eval_seeds": "10000..10049", "noise": "policy seed = layout seed (evaluate_policy noise_offset=0)",
                       "torch_threads": 1, "command": "python benchmarks/recap_ablations.py"})
        out.write_text(json.dumps(merged, indent=1))


if __name__ == "__main__":
    main()
