"""Why every RECAP fine-tune ends below pi0_base: the recipes again, one part of the data or one choice changed.

Notebook 08's table: every recipe that fine-tunes ``pi0_base`` on the chapter's data ends below it, BC on the
demonstrations alone included. Each ablation below is a shipped recipe (``vla_course/recipes/recap.py``) with
fields of ``RecapRecipe`` changed, trained and evaluated exactly as the recipe does (the same start, batch and lr;
50 held-out layouts 10000.., policy seed = layout seed). The first ones ran at the recipes' first budget, 1500
steps (written out in each, now that the recipes train 6000)::

    clean_demos        recap_bc_demos on pi0_base's 150 clean demonstrations only (no expert mistakes)
    no_mistakes        recap_bc_all without the expert's fumble/drop demonstrations (rollouts, corrections kept)
    recap_no_mistakes  recap on no_mistakes' data: RECAP against BC on all of it, pi*0.6's kind of data
    recap_full_return  recap with pi*0.6's pre-training advantage, A_t = G_t - V(o_t) (n_step=None)
    bc_all_4x          recap_bc_all with 4x the steps (6000 x 32: 2.2 passes over the data instead of 0.56)
    recap_4x           recap at the same 4x: does the label need more training to be read?
    bc_demos_4x, filtered_4x   the other two baselines at the same 4x
    recap_1x, bc_all_1x        the first budget again, on the same recordings as the 4x runs
    weak_*             the whole loop again from a weaker base policy, pi0_bc50 (50 demonstrations): its own
                       rollouts, corrections and value hold-out recorded, its own value function (weak_value),
                       then recap and the three BC baselines from it, all in <root>/weak_base; weak_*_4x at 4x
                       the steps and lr 3e-4 in <root>/weak_base_4x. Run so far: weak_value, weak_recap and
                       weak_recap_4x (the BC rows are defined, not yet run)

    python benchmarks/recap_ablations.py [--only clean_demos no_mistakes] [--root outputs/recap_ablations]

Each run lives in ``<root>/<ablation>/<recipe>`` beside copies of its base and ``value_so100`` (the weak base's runs in
``<root>/weak_base`` and ``<root>/weak_base_4x``, beside the value function ``weak_value`` trained); a run whose
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
    "clean_demos": ("recap_bc_demos", {"demos": ((0, 150, 0.0),), "mistake_demos": (), "steps": 1500},
                    "does fine-tuning on pi0_base's own clean demonstrations alone keep pi0_base's success?"),
    "no_mistakes": ("recap_bc_all", {"mistake_demos": (), "steps": 1500},
                    "do the expert's deliberate mistakes among the demonstrations pull BC on all data down?"),
    "recap_no_mistakes": ("recap", {"mistake_demos": (), "steps": 1500},
                          "on the data without the mistakes (pi*0.6's own kind: demonstrations, rollouts, "
                          "corrections), does recap beat no_mistakes' BC on all of it?"),
    "recap_full_return": ("recap", {"n_step": None, "steps": 1500},
                          "does the full-return advantage G_t - V(o_t) (fewer noisy labels) lift recap?"),
    "bc_all_4x": ("recap_bc_all", {"steps": 6000},
                  "BC on all the data with 4x the fine-tuning compute (6000 steps x 32, 2.2 passes over the data)"),
    "recap_4x": ("recap", {"steps": 6000},
                 "the recipes see 0.56 passes over the data: with 4x the compute for both, does recap pull ahead of "
                 "BC on all of it (bc_all_4x)?"),
    # the recordings made again (the same layouts and seeds, yet the base policy's rollouts did not replay exactly:
    # 40120 rollout frames instead of 40108): the first budget once more on them, so 4x meets 1x on one draw
    "recap_1x": ("recap", {"steps": 1500}, "recap at the first budget (1500 steps) on the recordings the 4x runs used"),
    "bc_all_1x": ("recap_bc_all", {"steps": 1500}, "BC on all the data at the first budget, the same recordings"),
    "bc_demos_4x": ("recap_bc_demos", {"steps": 6000}, "BC on the demonstrations only, with 4x the compute"),
    "filtered_4x": ("recap_filtered", {"steps": 6000}, "filtered BC with 4x the compute"),
}
WEAK = "pi0_bc50"  # the weaker base: every part of the data that a base policy drives is recorded again with it
for _name, _recipe, _question in (
        ("weak_value", "value_so100", "the value function on the weak base's data (its rollouts mostly fail)"),
        ("weak_recap", "recap", "from a weak base, whose rollouts are mostly failures, does recap beat BC on all?"),
        ("weak_bc_all", "recap_bc_all", "BC on all the data from the weak base (its failed rollouts included)"),
        ("weak_bc_demos", "recap_bc_demos", "BC on the demonstrations only, from the weak base"),
        ("weak_filtered", "recap_filtered", "filtered BC from the weak base")):
    ABLATIONS[_name] = (_recipe, {"base": WEAK, "steps": 1500}, _question)
# the weak base learnt little in the shipped budget (1500 steps at lr 1e-4: weak_recap 10%, pi0_bc50 6%), so the same
# two again with 4x the steps at lr 3e-4 (pi0_bc50 itself trained at 1e-3): the fine-tune must teach, not just keep
for _name, _recipe in (("weak_recap_4x", "recap"), ("weak_bc_all_4x", "recap_bc_all")):
    ABLATIONS[_name] = (_recipe, {"base": WEAK, "steps": 6000, "lr": 3e-4},
                        f"{_recipe} from the weak base with 4x the steps at lr 3e-4")
FOLDER = {name: "weak_base" + ("_4x" if name.endswith("_4x") else "") for name in ABLATIONS if name.startswith("weak_")}
VARIANT = {"value_so100": "value", "recap": "recap", "recap_bc_all": "bc_all", "recap_bc_demos": "bc_demos",
           "recap_filtered": "filtered"}
VALUE_KEYS = ("spearman_successful_heldout", "spearman_all_heldout", "mean_abs_error_heldout", "final_loss")
KEYS = ("success_rate", "successes", "episodes", "mean_steps", "mean_steps_to_finish", "throughput_per_hour",
        "failure_modes", "final_loss")


def run(name: str, root: Path) -> dict:
    from vla_course.recipes.recap import RecapRecipe
    from vla_course.train import _jsonable, run_recipe

    recipe, changes, question = ABLATIONS[name]
    cfg = RecapRecipe(variant=VARIANT[recipe], **changes)
    where = root / FOLDER.get(name, name)
    meta_path = where / recipe / "metadata.json"
    want = json.loads(json.dumps(_jsonable(dataclasses.asdict(cfg))))  # as saved
    if not (meta_path.exists() and json.loads(meta_path.read_text()).get("config") == want):
        if not (where / cfg.base).exists():
            shutil.copytree(CHECKPOINT_DIR / cfg.base, where / cfg.base)
        if recipe == "recap" and not (where / "value_so100").exists():  # only recap reads a value function
            if name in FOLDER:  # the weak base's own value function, trained on its own data first
                run("weak_value", root)
                if FOLDER[name] != FOLDER["weak_value"]:
                    shutil.copytree(root / FOLDER["weak_value"] / "value_so100", where / "value_so100")
            else:
                shutil.copytree(CHECKPOINT_DIR / "value_so100", where / "value_so100")
        run_recipe(recipe, seed=0, root=where, config=cfg)
    meta = json.loads(meta_path.read_text())
    m = meta["metrics"]
    row = {k: m[k] for k in (VALUE_KEYS if recipe == "value_so100" else KEYS)}
    if "advantage" in m:
        row["advantage"] = m["advantage"]
    return {"recipe": recipe, "changes": {k: _jsonable(v) for k, v in changes.items()}, "question": question,
            **row, "train_seconds": meta["train_seconds"], "eval_seconds": meta.get("eval_seconds"),
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
    for name in args.only:
        row = run(name, Path(args.root))
        merged = json.loads(out.read_text()) if out.exists() else {}  # read again: another run may have added rows
        merged.setdefault("ablations", {})[name] = row
        if row["recipe"] == "value_so100":
            print(f"{name:18s} value function: rank correlation on held-out successes "
                  f"{row['spearman_successful_heldout']}, all {row['spearman_all_heldout']:.2f}", flush=True)
        else:
            print(f"{name:18s} {row['recipe']:15s} success {row['success_rate']:.0%}  "
                  f"throughput {row['throughput_per_hour']:.0f}/h  failures {row['failure_modes']}", flush=True)
        merged.update({"eval_seeds": "10000..10049", "noise": "policy seed = layout seed (evaluate_policy noise_offset=0)",
                       "torch_threads": 1, "command": "python benchmarks/recap_ablations.py"})
        out.write_text(json.dumps(merged, indent=1))


if __name__ == "__main__":
    main()
