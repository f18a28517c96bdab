"""The real-arm path without hardware: LeRobot's own SO100Follower on a fake Feetech bus and fake cameras.

``real_arm()`` builds the robot exactly as a user does (``make_robot("so100", ...)`` with a
calibration file on disk), then swaps only the serial link and the cameras for fakes. Reads and
writes still go through LeRobot's normalisation, so the degrees here are a real SO-100's.
"""

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from lerobot.motors.feetech import FeetechMotorsBus

import vla_course
from vla_course.cameras import FIND_CAMERAS, to_policy_image
from vla_course.constants import IMAGE_SIZE, JOINT_NAMES, MOTOR_KEYS
from vla_course.control import run_episode
from vla_course.robot import (CALIBRATE, DEFAULT_MAX_RELATIVE_TARGET, FIND_PORT, RobotError, calibrate_command,
                              joint_limits_deg, make_robot)

# A plausible SO-100 calibration (encoder ticks, 4096 per turn), as lerobot-calibrate saves it.
CALIBRATION = {
    "shoulder_pan": (1, 758, 3298), "shoulder_lift": (2, 612, 3400), "elbow_flex": (3, 872, 3022),
    "wrist_flex": (4, 826, 3182), "wrist_roll": (5, 0, 4095), "gripper": (6, 2023, 3500),
}
# A valid real pose that the sim's limits would block (elbow_flex < 0, shoulder_lift > 11.5).
REAL_POSE = np.array([0.0, 60.0, -60.0, -30.0, 0.0, 50.0], dtype=np.float32)


class FakeFeetechBus(FeetechMotorsBus):
    """LeRobot's Feetech bus with the serial port replaced by a dict of encoder ticks.

    ``glitch``: reads and writes fail, but turning the torque off still works.
    ``lost``: the cable is out, everything fails, the torque cannot be turned off.
    """

    def __init__(self, bus: FeetechMotorsBus, pose_deg=REAL_POSE):
        super().__init__(bus.port, bus.motors, bus.calibration)
        self.ticks = self._unnormalize({self.motors[m].id: float(v) for m, v in zip(JOINT_NAMES, pose_deg)})
        self.open = self.torque = self.glitch = self.lost = False
        self.goals: list[dict[int, int]] = []  # raw Goal_Position ticks, as the motors receive them

    is_connected = property(lambda self: self.open)
    is_calibrated = property(lambda self: True)

    def connect(self, handshake=True):
        self.open = True

    def disconnect(self, disable_torque=True):
        if self.lost:
            raise ConnectionError("Failed to write 'Torque_Enable' on id_=1 after 6 tries. [TxRxResult] no status")
        self.torque = self.torque and not disable_torque
        self.open = False

    def configure_motors(self, *args, **kwargs):
        pass

    def write(self, data_name, motor, value, **kwargs):
        pass

    def enable_torque(self, motors=None, num_retry=0):
        self.torque = True

    def disable_torque(self, motors=None, num_retry=0):
        self.torque = False

    def _sync_read(self, addr, length, motor_ids, **kwargs):
        if self.glitch or self.lost:
            raise ConnectionError("Failed to sync read 'Present_Position'. [TxRxResult] There is no status packet!")
        return {i: self.ticks[i] for i in motor_ids}, 0

    def _sync_write(self, addr, length, ids_values, **kwargs):
        if self.glitch or self.lost:
            raise ConnectionError("Failed to sync write 'Goal_Position'. [TxRxResult] Port is in use!")
        self.goals.append(dict(ids_values))
        self.ticks.update(ids_values)  # an ideal arm: it reaches each goal by the next read
        return 0


class FakeCamera:
    """An OpenCVCamera stand-in that returns one frame of a real camera's size."""

    def __init__(self, frame: np.ndarray, fail_connect: bool = False):
        self.frame, self.fail_connect, self.is_connected = frame, fail_connect, False
        self.height, self.width = frame.shape[:2]

    def connect(self, warmup=True):
        if self.fail_connect:
            raise ConnectionError("Failed to open OpenCVCamera(/dev/video0).Run `lerobot-find-cameras opencv`.")
        self.is_connected = True

    def read_latest(self, max_age_ms=500):
        return self.frame.copy()

    def disconnect(self):
        self.is_connected = False


def write_calibration(directory: Path, robot_id: str = "vla_course_so100") -> None:
    cal = {m: {"id": i, "drive_mode": 0, "homing_offset": 0, "range_min": lo, "range_max": hi}
           for m, (i, lo, hi) in CALIBRATION.items()}
    (directory / f"{robot_id}.json").write_text(json.dumps(cal))


def real_arm(tmp_path, pose=REAL_POSE, cameras=None, **options):
    """``make_robot("so100", ...)`` as a user calls it; then the serial link and cameras become fakes."""
    write_calibration(tmp_path)
    port = tmp_path / "ttyACM0"
    port.touch()
    robot = make_robot("so100", port=str(port), calibration_dir=tmp_path, **options)
    robot.robot.bus = FakeFeetechBus(robot.robot.bus, pose)
    robot.robot.cameras = cameras or {}
    return robot, robot.robot.bus


def state(obs: dict) -> np.ndarray:
    return np.array([obs[k] for k in MOTOR_KEYS], dtype=np.float32)


def camera_frame(height: int, width: int) -> np.ndarray:
    """Grey, with a red square in the middle and a blue bar at the far left (outside the centre crop)."""
    frame = np.full((height, width, 3), 90, dtype=np.uint8)
    cy, cx, half = height // 2, width // 2, min(height, width) // 4
    frame[cy - half:cy + half, cx - half:cx + half] = (220, 20, 20)
    frame[:, : (width - min(height, width)) // 4] = (20, 20, 220)
    return frame


# --- 1. limits from the calibration, not from the sim -----------------------------------------------------


def test_limits_are_lerobot_degrees_at_the_ends_of_the_calibrated_range(tmp_path):
    robot, bus = real_arm(tmp_path)
    ids = {m: bus.motors[m].id for m in JOINT_NAMES}
    at_max = bus._normalize({ids[m]: CALIBRATION[m][2] for m in JOINT_NAMES})  # LeRobot's own units
    at_min = bus._normalize({ids[m]: CALIBRATION[m][1] for m in JOINT_NAMES})
    np.testing.assert_allclose(robot.upper, [at_max[ids[m]] for m in JOINT_NAMES], atol=1e-4)
    np.testing.assert_allclose(robot.lower, [at_min[ids[m]] for m in JOINT_NAMES], atol=1e-4)
    np.testing.assert_allclose(robot.lower[2:3], [-94.505], atol=1e-3)  # elbow: 2150 ticks = +-94.5 degrees
    assert robot.lower[5] == 0 and robot.upper[5] == 100  # the gripper: RANGE_0_100


def test_valid_real_poses_outside_the_sim_limits_pass(tmp_path):
    sim_lower, sim_upper = joint_limits_deg()
    assert np.any((REAL_POSE < sim_lower) | (REAL_POSE > sim_upper))  # the sim's limits would block it
    robot, bus = real_arm(tmp_path)
    robot.connect()
    present = state(robot.get_observation())
    np.testing.assert_allclose(present, REAL_POSE, atol=0.1)  # one encoder tick is 0.088 degrees
    target = present + np.array([2, 3, -4, 5, -6, 1], dtype=np.float32)  # within one step
    sent = robot.send_action(dict(zip(MOTOR_KEYS, target)))
    np.testing.assert_allclose(state(sent), target, atol=1e-4)
    np.testing.assert_allclose(state(robot.get_observation()), target, atol=0.1)


def test_targets_beyond_the_calibrated_range_are_clamped(tmp_path):
    robot, bus = real_arm(tmp_path, max_relative_target=500.0)
    robot.connect()
    robot.get_observation()
    sent = robot.send_action(dict(zip(MOTOR_KEYS, robot.upper + 80)))
    np.testing.assert_allclose(state(sent), robot.upper, atol=1e-4)
    for m in JOINT_NAMES:  # the motors were told at most their calibrated range_max
        assert CALIBRATION[m][2] - 1 <= bus.goals[-1][bus.motors[m].id] <= CALIBRATION[m][2]
    robot.get_observation()
    sent = robot.send_action(dict(zip(MOTOR_KEYS, robot.lower - 80)))
    np.testing.assert_allclose(state(sent), robot.lower, atol=1e-4)


def test_each_step_stays_bounded_on_the_way_to_a_far_target(tmp_path):
    robot, bus = real_arm(tmp_path)  # the default bound: 10 degrees per step
    robot.connect()
    target = robot.lower + 5
    for _ in range(40):
        present = state(robot.get_observation())
        sent = state(robot.send_action(dict(zip(MOTOR_KEYS, target))))
        assert np.all(np.abs(sent - present) <= DEFAULT_MAX_RELATIVE_TARGET + 1e-4)
    np.testing.assert_allclose(state(robot.get_observation()), target, atol=0.1)  # and it got there


def test_a_missing_calibration_names_the_command_that_makes_it(tmp_path):
    port = tmp_path / "ttyACM0"
    port.touch()
    with pytest.raises(RobotError) as info:
        make_robot("so100", port=str(port), calibration_dir=tmp_path)
    message = str(info.value)
    assert "no calibration" in message and "\n" not in message
    assert (f"lerobot-calibrate --robot.type=so100_follower --robot.port={port} --robot.id=vla_course_so100 "
            f"--robot.calibration_dir={tmp_path}") in message


def test_the_commands_named_in_messages_exist_and_parse():
    # the messages name them as `.venv/bin/<tool>`: the tools of the venv these tests run in
    bin_dir = Path(sys.executable).parent
    for command in (FIND_PORT, CALIBRATE, FIND_CAMERAS):
        assert command.split()[0].startswith(".venv/bin/")
        script = bin_dir / Path(command.split()[0]).name
        assert script.is_file() and os.access(script, os.X_OK), f"{command} is not installed in the venv"
    import draccus
    from lerobot.robots.so_follower import SO100FollowerConfig
    from lerobot.scripts.lerobot_calibrate import CalibrateConfig

    cfg = draccus.parse(CalibrateConfig, args=calibrate_command("/dev/ttyACM0", "my_arm", "/tmp/cal").split()[1:])
    assert isinstance(cfg.robot, SO100FollowerConfig)
    assert (cfg.robot.port, cfg.robot.id, cfg.robot.calibration_dir) == ("/dev/ttyACM0", "my_arm", Path("/tmp/cal"))


# --- 2. cameras -------------------------------------------------------------------------------------------


def test_make_robot_configures_the_named_cameras(tmp_path):
    from lerobot.cameras.opencv import OpenCVCameraConfig

    device = tmp_path / "video0"
    device.touch()
    robot, _ = real_arm(tmp_path, front_camera=str(device), wrist_camera="2")
    cameras = robot.robot.config.cameras
    assert set(cameras) == {"front", "wrist"}
    assert all(isinstance(c, OpenCVCameraConfig) for c in cameras.values())
    assert cameras["front"].index_or_path == device and cameras["wrist"].index_or_path == 2
    assert (cameras["front"].width, cameras["front"].height) == (640, 480)


def test_bad_camera_values_are_one_line_errors(tmp_path):
    with pytest.raises(RobotError, match=r"front_camera not found: /dev/video-nope.*lerobot-find-cameras opencv"):
        real_arm(tmp_path, front_camera="/dev/video-nope")
    with pytest.raises(ValueError, match="wrist_camera must be a camera device path"):
        real_arm(tmp_path, wrist_camera=1.5)
    with pytest.raises(ValueError, match="wrist_camera index must be >= 0"):
        real_arm(tmp_path, wrist_camera=-1)


@pytest.mark.parametrize("height,width", [(480, 640), (481, 607)])
def test_real_camera_frames_become_the_policy_images(tmp_path, height, width):
    frames = {"front": camera_frame(height, width), "wrist": camera_frame(height, width)[::-1].copy()}
    robot, _ = real_arm(tmp_path, cameras={name: FakeCamera(f) for name, f in frames.items()})
    robot.connect()
    obs = robot.get_observation()
    assert set(obs) == set(MOTOR_KEYS) | {"front", "wrist"}
    for name in ("front", "wrist"):
        assert obs[name].shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and obs[name].dtype == np.uint8
        assert robot.observation_features[name] == (IMAGE_SIZE, IMAGE_SIZE, 3)
        np.testing.assert_array_equal(obs[name], to_policy_image(frames[name], IMAGE_SIZE))


@pytest.mark.parametrize("height,width", [(480, 640), (481, 607), (640, 480)])
def test_to_policy_image_keeps_the_picture_where_it_was(height, width):
    out = to_policy_image(camera_frame(height, width), 96)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    red = (out[..., 0] > 150) & (out[..., 2] < 80)
    rows, cols = np.nonzero(red)
    # the square spans the middle half of the crop, so the middle half of the image: 24..71, still square
    assert abs(rows.min() - 24) <= 1 and abs(rows.max() - 71) <= 1
    assert abs(cols.min() - 24) <= 1 and abs(cols.max() - 71) <= 1
    np.testing.assert_array_equal(out[48, 48], (220, 20, 20))  # RGB order kept
    np.testing.assert_array_equal(out[2, 2], (90, 90, 90))  # the blue side bar was cropped away
    assert not np.any(out[..., 2] > 150)


def test_to_policy_image_averages_when_it_shrinks():
    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:, 1::2] = 255  # one-pixel stripes: finer than the policy's pixels
    out = to_policy_image(stripes, 96)
    # area interpolation: each output pixel is the mean of the 5 x 5 camera pixels it covers (of the crop)
    blocks = stripes[:, 80:560].reshape(96, 5, 96, 5, 3).mean(axis=(1, 3))
    assert np.all(np.abs(out.astype(float) - blocks) <= 1)  # greys (102 or 153), no black/white aliasing


def test_to_policy_image_rejects_what_is_not_a_colour_frame():
    with pytest.raises(ValueError, match=r"H x W x 3 uint8.*got shape \(480, 640\) uint8"):
        to_policy_image(np.zeros((480, 640), np.uint8), 96)
    with pytest.raises(ValueError, match="float32"):
        to_policy_image(np.zeros((480, 640, 3), np.float32), 96)
    sim_like = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_policy_image(sim_like, 96), sim_like)  # the sim's images pass unchanged


class CameraPolicy:
    """A pi0-shaped policy: it reads both cameras and asks for the present pose plus a small offset."""

    cameras = ("front", "wrist")

    def __init__(self, interrupt_at: int | None = None):
        self.interrupt_at, self.frames = interrupt_at, []

    def reset(self):
        self.frames = []

    def act(self, frame):
        if len(self.frames) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.frames.append(frame)
        assert frame["observation.images.front"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        return frame["observation.state"] + 1.0


def test_run_episode_drives_the_real_arm_with_camera_images(tmp_path):
    cameras = {n: FakeCamera(camera_frame(480, 640)) for n in ("front", "wrist")}
    robot, bus = real_arm(tmp_path, cameras=cameras)
    policy = CameraPolicy()
    with robot:
        result = run_episode(robot, policy, task="put the red cube in the bin", max_steps=5, realtime=False)
        assert bus.torque and bus.open  # a finished episode leaves the arm holding its pose
    assert result.steps == 5 and len(bus.goals) == 5 and len(policy.frames) == 5
    assert policy.frames[0]["task"] == "put the red cube in the bin"
    assert not bus.open and not bus.torque  # `with robot:` turned the torque off


def test_a_policy_that_needs_missing_cameras_fails_before_the_arm_moves(tmp_path):
    robot, bus = real_arm(tmp_path)  # no cameras named
    robot.connect()
    with pytest.raises(RobotError, match=r"needs the cameras front, wrist.*front_camera="):
        run_episode(robot, CameraPolicy(), max_steps=5)
    assert bus.goals == [] and not bus.torque and not bus.open


# --- 3. messages and stopping -----------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_port_that_is_not_an_arm_is_a_connection_failure(tmp_path):
    write_calibration(tmp_path)
    robot = make_robot("so100", port="/dev/null", calibration_dir=tmp_path)  # real LeRobot bus, real serial open
    with pytest.raises(RobotError) as info:
        robot.connect()
    message = str(info.value)
    assert message.startswith("could not connect to so_follower 'vla_course_so100' on /dev/null")
    assert f"find it with `{FIND_PORT}`" in message and "power" in message and "\n" not in message
    assert "lost" not in message and "stopped" not in message


def test_a_camera_that_fails_to_open_closes_the_arm_again(tmp_path):
    device = tmp_path / "video0"
    device.touch()
    cameras = {"front": FakeCamera(camera_frame(480, 640), fail_connect=True)}
    robot, bus = real_arm(tmp_path, cameras=cameras, front_camera=str(device))
    with pytest.raises(RobotError, match=r"could not connect.*OpenCVCamera.*cameras are there"):
        robot.connect()
    assert not bus.open  # the port that did open was closed again


def test_a_glitch_stops_the_arm_and_says_so(tmp_path):
    robot, bus = real_arm(tmp_path)
    robot.connect()
    robot.get_observation()
    assert bus.torque
    bus.glitch = True
    with pytest.raises(RobotError) as info:
        robot.send_action(dict(zip(MOTOR_KEYS, REAL_POSE)))
    message = str(info.value)
    assert message.startswith("lost the connection") and "the arm was stopped (torque off)" in message
    assert not bus.torque and not bus.open and "\n" not in message


def test_a_lost_cable_says_the_arm_may_still_have_torque(tmp_path):
    robot, bus = real_arm(tmp_path)
    robot.connect()
    robot.get_observation()
    bus.lost = True
    with pytest.raises(RobotError) as info:
        robot.get_observation()
    message = str(info.value)
    assert "may still have torque on" in message and "switch off its power supply" in message
    assert "was stopped" not in message
    with pytest.raises(RobotError, match="could not stop .* may still have torque on"):
        robot.disconnect()


@pytest.mark.parametrize("bad", [0, -3, math.nan, math.inf, "fast", True])
def test_max_relative_target_must_be_a_positive_number(tmp_path, bad):
    with pytest.raises(ValueError, match=r"max_relative_target must be a positive number.*or None for the default"):
        real_arm(tmp_path, max_relative_target=bad)


def test_max_relative_target_none_means_the_default(tmp_path):
    robot, _ = real_arm(tmp_path, max_relative_target=None)
    assert robot.max_relative_target == DEFAULT_MAX_RELATIVE_TARGET
    assert robot.robot.config.max_relative_target == DEFAULT_MAX_RELATIVE_TARGET  # LeRobot's own bound too
    robot, _ = real_arm(tmp_path, max_relative_target=2.5)
    assert robot.max_relative_target == robot.robot.config.max_relative_target == 2.5


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_run_episode_stops_the_real_arm_on_ctrl_c_or_an_error(tmp_path, error):
    cameras = {n: FakeCamera(camera_frame(480, 640)) for n in ("front", "wrist")}
    robot, bus = real_arm(tmp_path, cameras=cameras)
    robot.connect()
    policy = CameraPolicy(interrupt_at=3)
    if error is ValueError:
        policy.act = lambda frame: np.full(6, np.nan, np.float32)  # a policy gone wrong
    with pytest.raises(error):
        run_episode(robot, policy, max_steps=10)
    assert not bus.torque and not bus.open
    assert all(not c.is_connected for c in cameras.values())


def test_run_episode_notes_when_the_stop_failed_too(tmp_path):
    robot, bus = real_arm(tmp_path)
    robot.connect()
    bus.lost = True
    with pytest.raises(RobotError) as info:
        run_episode(robot, CameraPolicy(), max_steps=3)
    assert "may still have torque on" in str(info.value)
    assert any("stopping the arm failed too" in note for note in info.value.__notes__)


def test_leaving_with_robot_on_an_error_stops_the_arm_and_keeps_the_error(tmp_path):
    robot, bus = real_arm(tmp_path)
    with pytest.raises(ZeroDivisionError):
        with robot:
            assert bus.torque
            1 / 0
    assert not bus.torque and not bus.open
