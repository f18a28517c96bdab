"""The fine-tuning chapter: the new skill ``hold_up``, its expert, and the ``pi0_finetune`` recipe."""

import json
import shutil

import numpy as np
import pytest
import torch

from vla_course.checkpoints import CHECKPOINT_DIR, load_pretrained
from vla_course.sim import make_env
from vla_course.sim.expert import ScriptedExpert
from vla_course.sim.tasks import HoldUp


def state(held, z_target, z_other=0.0125):
    return {"targets": ["red"], "held": held,
            "cubes": {"red": {"pos": (0.2, 0.0, z_target)}, "blue": {"pos": (0.2, 0.1, z_other)}}}


def test_hold_up_success_needs_the_named_cube_in_the_gripper_high_up():
    task = HoldUp()
    assert task.success(state("red", HoldUp.HOLD_Z + 0.01))
    assert not task.success(state("red", 0.085))  # held at pick_place's carrying height: not high enough
    assert not task.success(state(None, 0.2))  # up in the air but not held (thrown, or teleported)
    assert not task.success(state("blue", 0.0125, z_other=0.2))  # the wrong cube held high


def test_hold_up_in_the_sim_a_falling_cube_and_a_carried_cube_do_not_count():
    e = make_env(task="hold_up", seed=3, cameras=())
    try:
        obs, _ = e.reset(seed=3)
        target = e.layout.targets[0]
        e.set_cube_pose(target, (0.2, 0.0, 0.2))  # a cube in mid-air, nobody holding it
        _, _, terminated, _, info = e.step(obs["observation.state"])
        assert not info["success"] and not terminated
        obs, _ = e.reset(seed=3)
        expert = ScriptedExpert(e)
        while expert.phase != "raise":  # grasped and lifted to carrying height: held, but low
            obs, _, terminated, _, info = e.step(expert.act(obs))
            assert not terminated
        assert e.scene_state()["held"] == target and not info["success"]
    finally:
        e.close()


def test_the_expert_solves_hold_up():
    e = make_env(task="hold_up", seed=20_000, cameras=())
    expert, successes, steps = ScriptedExpert(e), [], []
    try:
        for seed in range(20_000, 20_040):
            obs, _ = e.reset(seed=seed)
            expert.reset()
            for n in range(1, e.max_episode_steps + 1):
                obs, _, terminated, truncated, info = e.step(expert.act(obs))
                if terminated or truncated:
                    break
            successes.append(info["success"])
            steps.append(n)
    finally:
        e.close()
    assert np.mean(successes) >= 0.95, successes
    assert np.median(steps) < 120  # a clean grasp and lift takes ~2.5 s


def test_grow_vocabulary_keeps_old_ids_and_rows():
    from vla_course.recipes.finetune import grow_vocabulary

    model = load_pretrained("pi0_base", kind="Pi0")
    vlm = model.vlm
    ids, rows = dict(vlm.tokenizer.word_to_id), vlm.embed.weight.detach().clone()
    assert "hold" not in vlm.tokenizer  # the base has never heard the new task's verb
    added = grow_vocabulary(vlm, ["hold the red cube up", "hold the blue cube up"])
    assert added == ["hold"] and vlm.embed.num_embeddings == len(vlm.tokenizer) == len(ids) + 1
    assert all(vlm.tokenizer.word_to_id[w] == i for w, i in ids.items())
    torch.testing.assert_close(vlm.embed.weight[: len(ids)], rows)
    assert grow_vocabulary(vlm, ["hold the red cube up"]) == []  # nothing new the second time


@pytest.mark.parametrize("task, match", [("juggle", "register it in vla_course/sim/tasks.py"),
                                         ("pick_place", "pick a new one")])
def test_the_recipe_refuses_an_unknown_or_the_base_task(tmp_path, task, match):
    from vla_course.recipes.finetune import Pi0FinetuneRecipe
    from vla_course.train import run_recipe

    with pytest.raises(ValueError, match=match):
        run_recipe("pi0_finetune", root=tmp_path, cache=tmp_path / "cache", config=Pi0FinetuneRecipe(task=task))
    assert not (tmp_path / "cache").exists()  # refused before recording anything


@pytest.mark.slow
def test_quick_recipe_writes_a_loadable_checkpoint_with_its_task(tmp_path):
    from vla_course.train import run_recipe

    shutil.copytree(CHECKPOINT_DIR / "pi0_base", tmp_path / "pi0_base")  # the start point, beside the output
    out = run_recipe("pi0_finetune", seed=0, root=tmp_path, quick=True, cache=tmp_path / "cache")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["recipe"] == "pi0_finetune" and meta["finetune_task"] == "hold_up" and meta["quick"] is True
    assert all(str(tmp_path / "cache") in d for d in meta["data"]["dataset"])  # recorded under tmp, not the checkout
    assert meta["data"]["episodes"] == 2 and meta["data"]["base_mix"]["episodes"] == 1
    m = meta["metrics"]
    for task in ("new_task", "base_task"):
        assert {"before", "after"} <= set(m[task]) and 0 <= m[task]["after"]["success_rate"] <= 1
    assert m["eval_episodes"] == 1 and meta["training"]["words_added"] == ["hold"]
    model = load_pretrained("pi0_finetune", kind="Pi0", root=tmp_path)
    base = load_pretrained("pi0_base", kind="Pi0")
    assert "hold" in model.vlm.tokenizer and model.vlm.embed.num_embeddings == len(model.vlm.tokenizer)
    # the base's normalisation and relative actions travel on unchanged
    assert model.config.delta_mask == base.config.delta_mask
    torch.testing.assert_close(model.action_normalizer.unnormalize(torch.zeros(1, 6)),
                               base.action_normalizer.unnormalize(torch.zeros(1, 6)))
    assert sum(p.stat().st_size for p in out.iterdir()) < 5e6


def test_recordings_loaded_once_match_each_loaded_alone(tmp_path):
    import torch

    from vla_course.data.chunks import concat_chunks
    from vla_course.recipes.finetune import recording, robot_chunks, robot_chunks_of

    parts = [(recording("refer", 32_000, 1, cache=tmp_path, progress=False), "refer", 32_000, {}),
             (recording("pick_place", 7, 2, cache=tmp_path, progress=False), "pick_place", 7, {})]
    once = robot_chunks_of(parts, progress=False)
    alone = concat_chunks([robot_chunks(r, task, s0, kw, False) for r, task, s0, kw in parts])
    assert len(once) == len(alone) and once.num_episodes == 3
    for key in ("state", "action", "episode_index", "target_xy", "target_valid"):
        torch.testing.assert_close(getattr(once, key), getattr(alone, key))
    assert once.target_valid.any() and once.subtasks == alone.subtasks
