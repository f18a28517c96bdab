"""pi0.5 (notebook 07): the hierarchical recipe and its flat baseline, the subtask scoring of a rollout."""

import json
import shutil

import pytest
import torch

from vla_course.checkpoints import CHECKPOINT_DIR, load_pretrained
from vla_course.sim import make_env
from vla_course.sim.expert import PICK_SUBTASK, PLACE_SUBTASK, ScriptedExpert, oracle_subtask


def test_the_oracle_subtask_follows_the_scene_as_the_expert_labels_it():
    e = make_env(task="two_in_order", seed=3, cameras=())
    try:
        obs, _ = e.reset(seed=3)
        expert, agree, n = ScriptedExpert(e), 0, 0
        while True:
            want = oracle_subtask(e.scene_state())
            obs, _, terminated, truncated, _ = e.step(expert.act(obs))
            n += 1  # every frame: the scene alone says what the expert's label says (lift and fall included)
            agree += want == expert.subtask
            if terminated or truncated:
                break
        assert n > 150 and agree / n > 0.98, agree / n
        state = e.scene_state()
        assert oracle_subtask(state) == "done" and e.task.progress(state) == 2
    finally:
        e.close()
    first = {"target": "red", "held": None, "instruction": "clear the table"}
    assert oracle_subtask(first) == PICK_SUBTASK.format("red")
    assert oracle_subtask(dict(first, held="red")) == PLACE_SUBTASK
    assert oracle_subtask(dict(first, held="blue")) == PICK_SUBTASK.format("red")  # the wrong cube: still "pick red"


def test_progress_counts_targets_binned_in_the_tasks_order():
    from vla_course.sim.tasks import ClearTable, PutInBin

    cubes = {c: {"in_bin": c in ("red", "blue")} for c in ("red", "blue", "green")}
    ordered = {"targets": ["red", "blue", "green"], "cubes": cubes, "held": None, "bin_order": ["red", "blue"]}
    assert PutInBin(targets=["red", "blue", "green"]).progress(ordered) == 2
    assert PutInBin(targets=["red", "blue", "green"]).progress(dict(ordered, bin_order=["blue", "red"])) == 0
    assert ClearTable().progress(dict(ordered, bin_order=["blue", "red"])) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pi05", "pi05_flat"])
def test_quick_recipes_write_loadable_checkpoints(tmp_path, name):
    from vla_course.models import Pi0Policy
    from vla_course.train import run_recipe

    shutil.copytree(CHECKPOINT_DIR / "pi0_base", tmp_path / "pi0_base")  # the start point, beside the output
    out = run_recipe(name, seed=0, root=tmp_path, quick=True, cache=tmp_path / "cache")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["metrics"]["hierarchical"] is (name == "pi05")
    assert all(str(tmp_path / "cache") in d for d in meta["data"]["dataset"])
    assert meta["data"]["episodes"] == 2 and {"clear", "leftmost", "it"} <= set(meta["training"]["words_added"])
    m = meta["metrics"]["per_task"]["refer"]
    assert 0 <= m["success_rate"] <= 1 and 0 <= m["subtasks_completed"] <= 1
    model = load_pretrained(name, kind="Pi0", root=tmp_path)
    assert model.config.layout == ("subtask" if name == "pi05" else "pi0")
    pol = Pi0Policy(model)
    assert pol.hierarchical is (name == "pi05")
    if name == "pi05":
        assert "subtask_accuracy" in m
        thoughts = meta["evaluation"]["refer"]["episodes_detail"][0]["thoughts"]
        assert thoughts and all(isinstance(t, str) and isinstance(o, str) for _, t, o in thoughts)
    # the subtask cross-entropy is trained in pi05 only; both co-train on VQA
    terms = meta["training"]["terms_every_step"]
    assert ("multi_step.text" in terms) is (name == "pi05") and "vqa.text" in terms
