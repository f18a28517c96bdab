"""The multi-step tasks of the pi0.5 chapter: clear_table, two_in_order, refer (no rendering: cameras=())."""

import numpy as np
import pytest

from vla_course.sim import TASKS, make_env, scene
from vla_course.sim.expert import PICK_SUBTASK, PLACE_SUBTASK, ScriptedExpert
from vla_course.sim.tasks import REFERENCES, front_right_axis, rank_by_reference, task_from_instruction


def _run_expert(env, seed):
    obs, _ = env.reset(seed=seed)
    expert = ScriptedExpert(env)
    expert.reset()
    subtasks = []
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        if not subtasks or subtasks[-1] != expert.subtask:
            subtasks.append(expert.subtask)
        if terminated or truncated:
            return info["success"], subtasks, env.scene_state()


def _put_in_bin(env, colour, slot):
    bx, by, _ = scene.BIN_POS
    env.set_cube_pose(colour, (bx + slot[0], by + slot[1], 0.03))
    for _ in range(5):
        out = env.step(env.joint_positions().copy())
    return out


def test_the_new_tasks_are_registered_and_parsed():
    for name in ("clear_table", "two_in_order", "refer"):
        assert name in TASKS
    assert task_from_instruction("Clear the table.") == ("clear_table", {})
    assert task_from_instruction("put the red cube in the bin, then the blue cube") == (
        "two_in_order", {"targets": ["red", "blue"]})
    assert task_from_instruction("put the leftmost cube in the bin") == ("refer", {"reference": "leftmost"})
    assert task_from_instruction("put the cube nearest the bin in the bin") == (
        "refer", {"reference": "nearest the bin"})
    with pytest.raises(ValueError, match="clear the table"):
        task_from_instruction("put the red cube in the bin, then the red cube")
    with pytest.raises(ValueError, match="2 or 3"):
        make_env(task="clear_table", n_cubes=4, cameras=())
    with pytest.raises(ValueError, match="unknown reference"):
        make_env(task="refer", reference="topmost", cameras=())
    with pytest.raises(ValueError, match="at least 2 cubes"):
        make_env(task="refer", n_cubes=1, cameras=())


def test_clear_table_lays_out_two_or_three_cubes_and_judges_any_order():
    e = make_env(task="clear_table", seed=0, cameras=())
    try:
        counts = set()
        for s in range(12):
            e.reset(seed=s)
            state = e.scene_state()
            counts.add(len(state["cubes"]))
            assert e.instruction == "clear the table" and sorted(state["targets"]) == sorted(state["cubes"])
            d = [np.hypot(*np.subtract(state["cubes"][c]["pos"][:2], scene.BIN_POS[:2])) for c in state["targets"]]
            assert d == sorted(d) and state["target"] == state["targets"][0]  # nearest the bin first
        assert counts == {2, 3}
        e.reset(seed=1)
        order = list(reversed(e.scene_state()["targets"]))  # the "wrong" order still clears the table
        for k, colour in enumerate(order):
            assert not e.scene_state()["success"]
            _, _, terminated, _, info = _put_in_bin(e, colour, e.task.SLOTS[k])
        assert info["success"] and terminated
    finally:
        e.close()


def test_two_in_order_checks_the_order_with_pi05s_phrasing():
    e = make_env(task="two_in_order", seed=0, cameras=(), targets=["red", "blue"])
    try:
        e.reset(seed=0)
        assert e.instruction == "put the red cube in the bin, then the blue cube"
        _put_in_bin(e, "blue", (-0.02, 0.0))
        _, _, _, _, info = _put_in_bin(e, "red", (0.02, 0.0))
        assert not info["success"]
    finally:
        e.close()


def test_refer_names_an_unambiguous_cube_by_where_it_is():
    assert np.allclose(front_right_axis(), _camera_right_axis(), atol=1e-5)  # the MJCF rounds the quaternion
    e = make_env(task="refer", seed=0, cameras=())
    try:
        seen = set()
        for s in range(30):
            e.reset(seed=s)
            ref = e.layout.extra["reference"]
            seen.add(ref)
            ranked = rank_by_reference(e.layout.cubes, ref)
            assert e.layout.targets == [ranked[0][0]] and ranked[1][1] - ranked[0][1] >= e.task.MARGIN
            assert "cube" in e.instruction and not any(c in e.instruction for c in e.layout.cubes)
        assert seen == set(REFERENCES)
    finally:
        e.close()


def _camera_right_axis():
    from vla_course.data.vqa import front_right_axis as from_the_camera

    e = make_env(cameras=())
    try:
        return from_the_camera(e)
    finally:
        e.close()


@pytest.mark.parametrize("task", ["clear_table", "two_in_order", "refer"])
def test_the_scripted_expert_solves_each_task_and_labels_its_subtasks(task):
    e = make_env(task=task, seed=0, cameras=())
    try:
        for seed in range(4):
            success, subtasks, state = _run_expert(e, seed)
            assert success, (task, seed)
            expected = []
            for colour in state["bin_order"]:
                expected += [PICK_SUBTASK.format(colour), PLACE_SUBTASK]
            assert subtasks == expected
            if task != "clear_table":
                assert state["bin_order"] == state["targets"]
    finally:
        e.close()
