"""The Robot API: the sim speaks SO100Follower's keys; the real-arm path is safe without hardware."""

import numpy as np
import pytest

from vla_course.constants import MOTOR_KEYS
from vla_course.robot import (DEFAULT_MAX_RELATIVE_TARGET, RobotError, SafeRobot, SimSO100, joint_limits_deg,
                              make_robot, safe_goal)


def so100_follower_keys():
    from lerobot.robots.so_follower import SO100Follower, SO100FollowerConfig

    robot = SO100Follower(SO100FollowerConfig(port="/dev/null-no-arm", id="test"))  # builds, never connects
    return robot.observation_features, robot.action_features


def test_sim_features_match_lerobot_so100_follower():
    obs_ft, act_ft = so100_follower_keys()
    sim = SimSO100(cameras=("front", "wrist"), image_size=96)
    assert list(sim.action_features) == list(act_ft)
    motor_obs = [k for k in sim.observation_features if k.endswith(".pos")]
    assert motor_obs == [k for k in obs_ft if k.endswith(".pos")]
    assert sim.observation_features["front"] == (96, 96, 3)


def test_sim_robot_loop_moves_and_clamps():
    lower, upper = joint_limits_deg()
    with SimSO100(cameras=(), seed=3, max_relative_target=5.0) as robot:
        obs = robot.get_observation()
        assert set(obs) == set(MOTOR_KEYS)
        start = np.array([obs[k] for k in MOTOR_KEYS])
        goal = start + 20.0 * np.sign((lower + upper) / 2 - start)  # 20 units away, towards the middle
        for step in range(30):
            present = np.array([robot.get_observation()[k] for k in MOTOR_KEYS])
            sent = robot.send_action(dict(zip(MOTOR_KEYS, goal)))
            sent = np.array([sent[k] for k in MOTOR_KEYS])
            assert np.all(np.abs(sent - present) <= 5.0 + 1e-4)  # one step moves at most 5 units
            if step == 0:
                np.testing.assert_allclose(np.abs(sent - start), 5.0, atol=1e-4)  # the bound was applied
        end = np.array([robot.get_observation()[k] for k in MOTOR_KEYS])
        assert np.all(np.abs(end - goal) < 2.0)  # the arm really moved there (it started 20 away)

        robot.max_relative_target = None  # now only the joint limits apply
        sent = robot.send_action(dict(zip(MOTOR_KEYS, upper + 50.0)))
        np.testing.assert_allclose([sent[k] for k in MOTOR_KEYS], upper, atol=1e-4)  # clamped to the limits
        moved = np.array([robot.get_observation()[k] for k in MOTOR_KEYS])
        assert np.all(moved >= end - 1e-3) and np.any(moved > end + 1.0)  # towards the clamped target


def test_sim_step_bound_rejects_zero_and_none_means_unbounded():
    assert SimSO100(max_relative_target=None).max_relative_target is None
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_relative_target must be a positive number"):
            make_robot("sim", max_relative_target=bad)


def test_make_robot_rejects_options_of_the_other_kind():
    with pytest.raises(ValueError, match="make_robot\\('sim'\\) got real-arm options port, front_camera"):
        make_robot("sim", port="/dev/ttyACM0", front_camera="/dev/video0")
    with pytest.raises(ValueError, match="got simulator options task, seed"):
        make_robot("so100", port="/dev/ttyACM0", task="pick_place", seed=1)


def test_safe_goal_clamps_to_limits_and_rejects_nan():
    lower, upper = np.zeros(6, np.float32), np.full(6, 10.0, np.float32)
    out = safe_goal(np.full(6, 50.0), np.full(6, 9.0), lower, upper, max_relative_target=3.0)
    np.testing.assert_allclose(out, np.full(6, 10.0))  # clamped to the limit (10), a step of 1 <= 3
    out = safe_goal(np.full(6, -50.0), np.full(6, 5.0), lower, upper, max_relative_target=3.0)
    np.testing.assert_allclose(out, np.full(6, 2.0))  # the limit (0) is 5 away: one step of 3
    out = safe_goal(np.full(6, 50.0), np.full(6, 15.0), lower, upper, max_relative_target=3.0)
    np.testing.assert_allclose(out, np.full(6, 12.0))  # outside the limits: brought back 3 per step, not snapped
    with pytest.raises(ValueError, match="NaN"):
        safe_goal(np.full(6, np.nan), np.zeros(6), lower, upper, None)


class FlakyArm:
    """A stand-in arm whose link fails after a few commands."""

    name = "flaky"
    observation_features = {k: float for k in MOTOR_KEYS}
    action_features = {k: float for k in MOTOR_KEYS}

    def __init__(self, fail_after=2):
        self.sent, self.fail_after, self.is_connected, self.disconnects = [], fail_after, False, 0

    def connect(self, calibrate=True):
        self.is_connected = True

    def get_observation(self):
        return {k: 0.0 for k in MOTOR_KEYS}

    def send_action(self, action):
        if len(self.sent) >= self.fail_after:
            raise ConnectionError("serial port vanished")
        self.sent.append(action)
        return action

    def disconnect(self):
        self.is_connected = False
        self.disconnects += 1


def test_safe_robot_bounds_steps_and_stops_on_disconnect():
    arm = FlakyArm(fail_after=2)
    robot = SafeRobot(arm, max_relative_target=4.0)
    robot.connect()
    robot.get_observation()
    sent = robot.send_action({k: 90.0 for k in MOTOR_KEYS})
    assert all(abs(v) <= 4.0 + 1e-6 for v in sent.values())
    robot.send_action({k: 1.0 for k in MOTOR_KEYS})
    with pytest.raises(RobotError, match="lost the connection"):
        robot.send_action({k: 1.0 for k in MOTOR_KEYS})
    assert arm.disconnects == 1 and not arm.is_connected
    assert len(arm.sent) == 2  # nothing was sent after the failure


def test_real_arm_without_hardware_gives_clear_error():
    with pytest.raises(RobotError, match="robot port not found: /dev/ttyNOPE.*lerobot-find-port"):
        make_robot("so100", port="/dev/ttyNOPE")
    with pytest.raises(RobotError, match="serial port"):
        make_robot("so100")
    with pytest.raises(ValueError, match="unknown robot kind"):
        make_robot("ur5")


def test_safe_robot_needs_a_step_bound():
    with pytest.raises(ValueError, match="max_relative_target"):
        SafeRobot(FlakyArm(), max_relative_target=0)
    assert SafeRobot(FlakyArm(), max_relative_target=None).max_relative_target == DEFAULT_MAX_RELATIVE_TARGET


def test_safe_robot_without_calibration_uses_the_sim_limits():
    lower, upper = joint_limits_deg()
    robot = SafeRobot(FlakyArm())  # no `calibration` attribute: a robot that speaks the sim's numbers
    np.testing.assert_array_equal(robot.lower, lower)
    np.testing.assert_array_equal(robot.upper, upper)
    arm = FlakyArm()
    arm.calibration = {}  # a LeRobot arm that was never calibrated
    with pytest.raises(RobotError, match="no calibration.*lerobot-calibrate --robot.type=so100_follower"):
        SafeRobot(arm)


def test_run_episode_leaves_the_sim_connected_after_an_error():
    from vla_course.control import run_episode

    class Broken:
        def reset(self):
            pass

        def act(self, frame):
            raise ValueError("a policy bug")

    with SimSO100(cameras=(), seed=0) as robot:
        with pytest.raises(ValueError, match="a policy bug"):
            run_episode(robot, Broken(), max_steps=3)
        assert robot.is_connected  # a notebook can look at the scene and run again
