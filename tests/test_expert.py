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
