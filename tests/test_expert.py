"""Tests of the scripted IK expert (no rendering: cameras=())."""

import numpy as np
import pytest

from vla_course.sim import make_env
from vla_course.sim.expert import ScriptedExpert


def run_episode(env, expert, seed):
    obs, _ = env.reset(seed=seed)
    expert.reset()
    actions = []
    while True:
        action = expert.act(obs)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info["success"], np.array(actions)


@pytest.fixture(scope="module")
def env():
    e = make_env(task="pick_place", seed=0, cameras=())
    yield e
    e.close()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_expert_succeeds_quickly(env, seed):
    expert = ScriptedExpert(env)
    success, actions = run_episode(env, expert, seed)
    assert success
    assert len(actions) < 200  # a clean pick-and-place takes a few seconds
    assert actions.dtype == np.float32 and actions.shape[1] == 6
    # The cube went in without the fumble/drop machinery kicking in.
    assert "dropped" not in expert.history


def test_actions_are_within_joint_limits(env):
    from vla_course.sim.units import LIMITS_LEROBOT

    _, actions = run_episode(env, ScriptedExpert(env, noise_std=5.0), 0)
    assert np.all(actions >= LIMITS_LEROBOT[:, 0] - 1e-4) and np.all(actions <= LIMITS_LEROBOT[:, 1] + 1e-4)


def test_drop_without_recovery_fails(env):
    expert = ScriptedExpert(env, mistake="drop", recover=False)
    success, _ = run_episode(env, expert, 1)
    assert not success
    assert "dropped" in expert.history and expert.gave_up


def test_drop_with_recovery_succeeds(env):
    expert = ScriptedExpert(env, mistake="drop", recover=True)
    success, _ = run_episode(env, expert, 1)
    assert success
    # It picked the cube up twice.
    assert expert.history.count("grasp") == 2 and "dropped" in expert.history


def test_fumble_then_recover(env):
    expert = ScriptedExpert(env, mistake="fumble", recover=True)
    success, _ = run_episode(env, expert, 2)
    assert success and expert.history.count("grasp") == 2
    expert = ScriptedExpert(env, mistake="fumble", recover=False)
    success, _ = run_episode(env, expert, 2)
    assert not success and expert.gave_up


def test_noise_changes_actions_but_is_reproducible(env):
    env.reset(seed=3)
    clean = ScriptedExpert(env, noise_std=0.0)
    a_clean = clean.act(None)
    noisy = ScriptedExpert(env, noise_std=3.0, seed=1)
    a_noisy = noisy.act(None)
    assert np.abs(a_noisy[:5] - a_clean[:5]).max() > 0.1
    assert a_noisy[5] == a_clean[5]  # the gripper is left alone
    again = ScriptedExpert(env, noise_std=3.0, seed=1)
    np.testing.assert_array_equal(again.act(None), a_noisy)


@pytest.mark.parametrize("seed", [7, 8])
def test_detour_hovers_beside_the_cube_then_corrects(env, seed):
    expert = ScriptedExpert(env, detour=0.08)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    offset = np.linalg.norm(expert.detour_offset)
    assert 0.04 <= offset <= 0.08
    target = env.layout.targets[0]
    cube_xy = np.array(env.cube_pos(target)[:2])
    farthest_at_hover, grasp_dist = 0.0, None
    while True:
        action = expert.act(obs)
        tip = env.fingertip_pos()
        if expert.phase == "approach" and tip[2] > 0.07:  # at hover height, before the descent
            farthest_at_hover = max(farthest_at_hover, float(np.linalg.norm(tip[:2] - cube_xy)))
        if expert.phase == "grasp" and grasp_dist is None:
            grasp_dist = float(np.linalg.norm(tip[:2] - np.array(env.cube_pos(target)[:2])))
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert info["success"]
    assert farthest_at_hover > 0.03  # it really went beside the cube first
    assert grasp_dist < 0.015  # and corrected before grasping (the jaws open ~50 mm around a 25 mm cube)


def test_bad_knobs_raise():
    with pytest.raises(ValueError, match="detour"):
        ScriptedExpert(make_env(task="pick_place", seed=0, cameras=()), detour=0.5)
    e = make_env(cameras=())
    try:
        with pytest.raises(ValueError, match="mistake"):
            ScriptedExpert(e, mistake="sneeze")
        with pytest.raises(ValueError, match="noise_std"):
            ScriptedExpert(e, noise_std=-1.0)
    finally:
        e.close()


def test_two_step_task(env):
    e = make_env(task="pick_place_two", seed=0, cameras=())
    try:
        success, _ = run_episode(e, ScriptedExpert(e), 0)
        assert success and e.scene_state()["bin_order"][:2] == e.layout.targets
    finally:
        e.close()


@pytest.mark.parametrize("seed", [0, 3])
def test_taking_over_with_the_cube_in_the_gripper_carries_it_on(env, seed):
    """An intervention that starts while the named cube is held (mid-transport) must not drop it."""
    expert = ScriptedExpert(env)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    while expert.phase != "transport":
        obs, *_ = env.step(expert.act(obs))
    for _ in range(5):
        obs, *_ = env.step(expert.act(obs))
    target = env.layout.targets[0]
    assert env.held_cube() == target
    fresh = ScriptedExpert(env)  # a new expert takes over here, as InterventionPolicy does
    assert fresh.phase == "lift" and fresh.target == target
    held_throughout = True
    while True:
        obs, _, terminated, truncated, info = env.step(fresh.act(obs))
        if fresh.phase in ("lift", "transport"):
            held_throughout &= env.held_cube() == target
        if terminated or truncated:
            break
    assert info["success"] and held_throughout
    assert "approach" not in fresh.history  # it never went back to pick the cube up again


# Actions of the expert recorded from the code *before* hold_up was added (every 15th step, rounded to 0.01
# LeRobot units, and the episode length): adding a task must not change a single existing demonstration.
RECORDED = {
    ("pick_place", 3, ()): (102, [
        [1.57, -120.15, 109.14, 101.0, -26.88, 36.36], [16.57, -84.37, 88.7, 85.69, -41.89, 36.36],
        [18.08, -73.22, 96.55, 66.64, -43.39, 36.36], [17.71, -71.78, 94.39, 67.38, -43.03, 0.0],
        [17.66, -75.73, 68.67, 97.03, -42.97, 0.0], [-16.75, -104.0, 102.75, 91.25, -8.57, 0.0],
        [-56.39, -89.07, 86.19, 92.87, 31.07, 0.0]]),
    ("pick_place", 11, (("mistake", "fumble"),)): (127, [
        [-0.86, -125.95, 108.68, 103.13, 11.83, 36.36], [-13.46, -136.12, 146.36, 79.76, 24.43, 36.36],
        [-13.46, -130.96, 155.85, 65.11, 24.43, 0.0], [-13.46, -136.87, 137.6, 89.26, 24.43, 0.0],
        [-15.08, -111.58, 120.45, 81.14, -63.95, 36.36], [-15.09, -103.88, 134.76, 59.13, -63.94, 0.0],
        [-15.08, -109.91, 126.9, 72.99, -63.95, 0.0], [-33.61, -108.29, 106.95, 91.33, -45.43, 0.0]]),
    ("pick_place", 5, (("detour", 0.08),)): (104, [
        [0.99, -119.48, 104.04, 103.13, 49.79, 36.36], [-0.79, -70.8, 67.88, 92.94, 51.57, 36.36],
        [9.92, -89.46, 103.65, 75.83, 40.86, 36.36], [9.92, -84.25, 111.9, 62.36, 40.86, 0.0],
        [9.92, -90.6, 100.0, 80.57, 40.86, 0.0], [-12.55, -105.45, 104.19, 91.28, 63.31, 0.0],
        [-54.24, -94.53, 92.73, 91.78, 105.01, 0.0]]),
    ("pick_place_two", 4, ()): (229, [
        [1.92, -126.5, 109.36, 103.13, 55.08, 36.36], [43.82, -98.56, 100.94, 87.59, 13.19, 36.36],
        [47.64, -86.01, 108.18, 67.85, 9.37, 36.36], [47.64, -83.54, 110.96, 62.59, 9.37, 0.0],
        [47.64, -90.35, 91.23, 89.1, 9.37, 0.0], [16.48, -124.67, 120.25, 94.42, 40.53, 0.0],
        [-40.26, -117.72, 115.15, 92.55, 97.25, 0.0], [-61.61, -85.79, 86.25, 89.58, 118.62, 0.0]]),
}


@pytest.mark.parametrize("case", list(RECORDED), ids=lambda c: f"{c[0]}-{c[1]}")
def test_existing_demonstrations_replay_exactly_as_recorded_before_hold_up(case):
    task, seed, knobs = case
    steps, rows = RECORDED[case]
    e = make_env(task=task, seed=seed, cameras=())
    try:
        success, actions = run_episode(e, ScriptedExpert(e, **dict(knobs)), seed)
    finally:
        e.close()
    assert success and len(actions) == steps
    np.testing.assert_allclose(actions[::15][: len(rows)], rows, atol=0.006)


def test_hold_up_lifts_the_named_cube_high_and_labels_its_subtasks():
    from vla_course.sim.expert import HOLD_SUBTASK, PLACE_SUBTASK
    from vla_course.sim.tasks import HoldUp

    e = make_env(task="hold_up", seed=10, cameras=())
    try:
        obs, _ = e.reset(seed=10)
        expert = ScriptedExpert(e)
        target, subtasks = e.layout.targets[0], []
        while True:
            action = expert.act(obs)
            subtasks.append(expert.subtask)
            obs, _, terminated, truncated, info = e.step(action)
            if terminated or truncated:
                break
        state = e.scene_state()
        assert info["success"] and state["held"] == target and state["cubes"][target]["pos"][2] >= HoldUp.HOLD_Z
        assert expert.history[-2:] == ["lift", "raise"] and "transport" not in expert.history
        # "pick up the <c> cube" while reaching, grasping and lifting, then "hold it up"; never the bin
        assert subtasks[0] == f"pick up the {target} cube" and subtasks[-1] == HOLD_SUBTASK
        assert PLACE_SUBTASK not in subtasks and sorted(set(subtasks)) == [HOLD_SUBTASK, f"pick up the {target} cube"]
    finally:
        e.close()
