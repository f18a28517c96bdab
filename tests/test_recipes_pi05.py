"""pi0.5 (notebook 07): the hierarchical recipe and its flat baseline, the subtask scoring of a rollout."""

import json
import shutil

import pytest
import torch

from vla_course.checkpoints import CHECKPOINT_DIR, load_pretrained
from vla_course.sim import make_env
from vla_course.sim.expert import (INSTRUCTION_SUBTASK, PICK_SUBTASK, PLACE_SUBTASK, ScriptedExpert, instruction_subtasks,
                                   oracle_subtask)


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


def test_instruction_words_name_the_cube_from_reach_to_release():
    labels = [PICK_SUBTASK.format("red"), PLACE_SUBTASK, PICK_SUBTASK.format("blue"), PLACE_SUBTASK, "done",
              PICK_SUBTASK.format("green"), PLACE_SUBTASK]
    out = instruction_subtasks(labels, [0, 0, 0, 0, 0, 1, 1])
    assert out == [INSTRUCTION_SUBTASK.format(c) for c in ("red", "red", "blue", "blue")] + ["done"] + \
        [INSTRUCTION_SUBTASK.format("green")] * 2
    assert INSTRUCTION_SUBTASK.format("red") == "put the red cube in the bin"  # pick_place's own instruction
    with pytest.raises(ValueError, match="episode 1"):  # no colour carries over into the next episode
        instruction_subtasks([PICK_SUBTASK.format("red"), PLACE_SUBTASK], [0, 1])
    with pytest.raises(ValueError, match="hold it up"):
        instruction_subtasks([PICK_SUBTASK.format("red"), "hold it up"], [0, 0])
    with pytest.raises(ValueError):
        instruction_subtasks(labels, [0])  # one episode index per label
    # the oracle speaks the same words: the scene's current target, whether held or not
    state = {"target": "red", "held": None, "instruction": "clear the table"}
    for held in (None, "red", "blue"):
        assert oracle_subtask(dict(state, held=held), "instruction") == INSTRUCTION_SUBTASK.format("red")
    assert oracle_subtask(dict(state, target=None), "instruction") == "done"
    with pytest.raises(ValueError, match="hold_up"):
        oracle_subtask(dict(state, instruction="hold the red cube up"), "instruction")
    with pytest.raises(ValueError, match="words"):
        oracle_subtask(state, "sentences")


def test_recorded_labels_in_instruction_words_agree_with_the_oracle():
    """An expert episode of two_in_order: its per-frame labels, mapped, are what the oracle says frame by frame."""
    e = make_env(task="two_in_order", seed=5, cameras=())
    try:
        obs, _ = e.reset(seed=5)
        expert, labels, wants = ScriptedExpert(e), [], []
        while True:
            wants.append(oracle_subtask(e.scene_state(), "instruction"))
            obs, _, terminated, truncated, _ = e.step(expert.act(obs))
            labels.append(expert.subtask)
            if terminated or truncated:
                break
    finally:
        e.close()
    mapped = instruction_subtasks(labels, [0] * len(labels))
    agree = sum(m == w for m, w in zip(mapped, wants)) / len(wants)
    assert agree > 0.98, agree
    assert len(set(mapped) - {"done"}) == 2  # one subtask per cube


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
        row = meta["evaluation"]["refer"]["episodes_detail"][0]  # the thoughts summarised: megabytes otherwise
        assert "thoughts" not in row and 0 <= row["decodes_as_the_scene_called_for"] <= row["decodes"]
        assert row["decodes"] >= row["steps"] // meta["n_action_steps"]
    # the subtask cross-entropy is trained in pi05 only; both co-train on VQA
    terms = meta["training"]["terms_every_step"]
    assert ("high_level.text" in terms) is (name == "pi05") and "vqa.text" in terms
    # pi05's extra high-level rows from the decision frames: some frames of the 2 episodes, not all
    n = meta["training"]["decision_frames"]["frames"]
    assert (("high_level_decisions.text" in terms) and 0 < n < meta["data"]["frames"]) if name == "pi05" else n == 0


def test_an_oracle_high_level_says_what_the_scene_calls_for():
    """pi0.5's ablation with a perfect high level: evaluate_policy hands the policy the scene (bind_env), and
    every 'thought' is the oracle's subtask, in the model's words; the low level acts on it."""
    from vla_course.models.policy import OracleHighLevel
    from vla_course.models.synthetic import random_pi0_batch, stats_from_batch, tiny_pi0
    from vla_course.training.evaluate import evaluate_policy

    model = tiny_pi0(layout="subtask", subtask_as_prompt=True, subtask_words="instruction")
    model.set_normalization_stats(stats_from_batch(random_pi0_batch(4, model.config.chunk_size)))
    pol = OracleHighLevel(model, n_action_steps=4, seed=0)
    ev = evaluate_policy(pol, 10_000, 1, task="two_in_order", progress=False)
    row = ev["episodes_detail"][0]
    assert ev["subtask_accuracy"] == 1.0 and len(row["thoughts"]) == -(-row["steps"] // 4)  # one per chunk
    assert {text for _, text, _ in row["thoughts"]} == {INSTRUCTION_SUBTASK.format(row["target"])}  # nothing binned
