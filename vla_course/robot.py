"""One Robot API for the simulated and the real SO-100.

LeRobot drives every arm through the same small interface (``lerobot.robots.Robot``)::

    robot.connect()
    obs = robot.get_observation()      # {"shoulder_pan.pos": deg, ..., "gripper.pos": 0..100, "front": HxWx3, ...}
    sent = robot.send_action(action)   # {"shoulder_pan.pos": deg, ...} -> the action actually sent
    robot.disconnect()

``SimSO100`` speaks exactly that, backed by the MuJoCo world of ``vla_course.sim``, so one control
loop (``vla_course.control.run_episode``) drives the simulation or a real arm.
``make_robot("so100", port=..., front_camera=..., wrist_camera=...)`` returns LeRobot's own
``SO100Follower`` wrapped in :class:`SafeRobot`: targets clamped to the arm's calibrated range, each
step bounded (``max_relative_target``), camera frames cut to the policy's 96 x 96, a clean stop.

Sim and real angles: the same units, different zeros
----------------------------------------------------
Both speak degrees (the gripper 0..100) and turn the same way, but they count from different zeros:

* the sim counts from the MJCF's zero pose (``sim/units.py``), within the MJCF's limits
  (:func:`joint_limits_deg`, e.g. elbow_flex 0..180);
* LeRobot counts each joint from the **middle of its calibrated range**. Calibration
  (``lerobot-calibrate``) sets a ``homing_offset`` so that the pose you hold reads half a turn
  (2047 of 4096 encoder ticks), then records the ticks ``range_min``/``range_max`` each joint reaches;
  ``MotorNormMode.DEGREES`` reads ``(ticks - (range_min + range_max) / 2) * 360 / 4095``. A real joint
  thus spans ``-half .. +half`` degrees, ``half = (range_max - range_min) / 2 * 360 / 4095``: an elbow
  calibrated over 2150 ticks spans -94.5..94.5, where the sim's spans 0..180.

One physical pose therefore has different numbers in sim and on a real arm (a per-joint offset),
and the sim's limits would block valid real poses. :class:`SafeRobot` takes a real arm's limits from
its calibration (:func:`calibrated_limits`), never from the sim. A policy trained only in sim needs
that offset (or real data) before its absolute targets mean the same pose on a real arm.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from vla_course.cameras import FIND_CAMERAS, opencv_camera, to_policy_image
from vla_course.errors import RobotError
from vla_course.constants import CAMERAS, IMAGE_SIZE, JOINT_NAMES, MOTOR_KEYS

# A conservative per-step bound for the real arm (degrees, or gripper units, per control step).
DEFAULT_MAX_RELATIVE_TARGET = 10.0
DEFAULT_ROBOT_ID = "vla_course_so100"  # names the calibration file: <calibration dir>/<id>.json
STS3215_RESOLUTION = 4096  # encoder ticks per turn of the SO-100's Feetech motors
# LeRobot's tools, as installed in this project's venv (run from the repository root).
FIND_PORT = ".venv/bin/lerobot-find-port"
CALIBRATE = ".venv/bin/lerobot-calibrate"


def joint_limits_deg() -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper joint limits of the *sim* in LeRobot units (degrees; gripper 0..100), from its model."""
    from vla_course.sim import units

    return units.LIMITS_LEROBOT[:, 0].astype(np.float32), units.LIMITS_LEROBOT[:, 1].astype(np.float32)


def calibrated_limits(calibration: dict, bus=None) -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper limits of a *real* arm in LeRobot units, from its ``MotorCalibration`` per motor.

    A ``DEGREES`` joint spans +-half its calibrated range (module docstring); a ``RANGE_0_100`` one
    (the gripper) 0..100; a ``RANGE_M100_100`` one -100..100. The norm modes and the encoder
    resolution come from LeRobot's ``bus`` if given, else those of ``SO100Follower(use_degrees=True)``.
    """
    lower, upper = [], []
    for name in JOINT_NAMES:
        cal = calibration[name]
        if cal.range_max <= cal.range_min:
            raise ValueError(f"the calibration of {name} is invalid (range_min {cal.range_min} >= "
                             f"range_max {cal.range_max})")
        motor = bus.motors[name] if bus is not None else None
        mode = motor.norm_mode if motor else ("range_0_100" if name == "gripper" else "degrees")
        if mode == "degrees":
            resolution = bus.model_resolution_table[motor.model] if motor else STS3215_RESOLUTION
            half = (cal.range_max - cal.range_min) / 2 * 360 / (resolution - 1)
            lo, hi = -half, half
        else:
            lo, hi = (0.0, 100.0) if mode == "range_0_100" else (-100.0, 100.0)
        lower.append(lo)
        upper.append(hi)
    return np.array(lower, dtype=np.float32), np.array(upper, dtype=np.float32)


def step_bound(value, default: float | None) -> float | None:
    """Check ``max_relative_target``: ``None`` means ``default``; otherwise a finite number > 0."""
    if value is None:
        return default
    try:
        bound = float(value)
    except (TypeError, ValueError):
        bound = math.nan
    if isinstance(value, bool) or not (math.isfinite(bound) and bound > 0):
        fallback = "no bound" if default is None else f"the default, {default:g}"
        raise ValueError(f"max_relative_target must be a positive number of degrees per step, got {value!r}; "
                         f"pass e.g. max_relative_target=5, or None for {fallback}")
    return bound


def calibrate_command(port: str = "/dev/ttyACM0", robot_id: str = DEFAULT_ROBOT_ID, calibration_dir=None) -> str:
    """The command that calibrates an SO-100 follower once and saves ``<calibration dir>/<robot_id>.json``."""
    command = f"{CALIBRATE} --robot.type=so100_follower --robot.port={port} --robot.id={robot_id}"
    return command + (f" --robot.calibration_dir={calibration_dir}" if calibration_dir else "")


def action_dict_to_array(action: dict) -> np.ndarray:
    missing = [k for k in MOTOR_KEYS if k not in action]
    if missing:
        raise ValueError(f"action is missing keys {missing}; expected exactly {list(MOTOR_KEYS)}")
    return np.array([float(action[k]) for k in MOTOR_KEYS], dtype=np.float32)


def action_array_to_dict(action) -> dict[str, float]:
    a = np.asarray(action, dtype=np.float32).reshape(-1)
    if a.shape != (len(MOTOR_KEYS),):
        raise ValueError(f"action must have {len(MOTOR_KEYS)} values ({', '.join(MOTOR_KEYS)}), got shape {a.shape}")
    return {k: float(v) for k, v in zip(MOTOR_KEYS, a)}


def observation_to_frame(obs: dict, task: str) -> dict:
    """Robot observation (motor keys + camera names) -> LeRobot dataset/policy keys."""
    frame = {"observation.state": np.array([obs[k] for k in MOTOR_KEYS], dtype=np.float32), "task": task}
    for key, value in obs.items():
        if key not in MOTOR_KEYS:
            frame[f"observation.images.{key}"] = value
    return frame


def safe_goal(goal: np.ndarray, present: np.ndarray, lower: np.ndarray, upper: np.ndarray,
              max_relative_target: float | None) -> np.ndarray:
    """Bound one step: clamp into ``[lower, upper]``, then move at most ``max_relative_target`` from ``present``.

    Clamping first means the step bound always holds: an arm that starts outside the limits is
    brought back at most ``max_relative_target`` per step, never snapped.
    """
    goal = np.asarray(goal, dtype=np.float32)
    if not np.all(np.isfinite(goal)):
        raise ValueError(f"action contains NaN or inf: {goal}; a policy produced invalid output")
    goal = np.clip(goal, lower, upper)
    if max_relative_target is not None:
        goal = present + np.clip(goal - present, -max_relative_target, max_relative_target)
    return goal.astype(np.float32)


def _one_line(error: BaseException) -> str:
    """The root cause of ``error`` on one line (LeRobot's messages span several)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return " ".join(str(error).split()) or type(error).__name__


class SimSO100:
    """The simulated SO-100 with LeRobot's Robot API (same keys and units as ``SO100Follower``)."""

    name = "sim_so100"
    simulated = True  # the control loop leaves a simulator connected when an episode fails

    def __init__(self, task: str = "pick_place", seed: int = 0, image_size: int = IMAGE_SIZE,
                 cameras: tuple[str, ...] = CAMERAS, max_relative_target: float | None = None, **task_kwargs):
        self.task, self.seed, self.image_size, self.cameras = task, seed, image_size, tuple(cameras)
        self.max_relative_target = step_bound(max_relative_target, None)
        self.task_kwargs = task_kwargs
        self.env = None
        self.last_info: dict = {}

    # --- LeRobot Robot API -------------------------------------------------------------------
    @property
    def observation_features(self) -> dict:
        feats: dict = {k: float for k in MOTOR_KEYS}
        feats.update({cam: (self.image_size, self.image_size, 3) for cam in self.cameras})
        return feats

    @property
    def action_features(self) -> dict:
        return {k: float for k in MOTOR_KEYS}

    @property
    def is_connected(self) -> bool:
        return self.env is not None

    @property
    def is_calibrated(self) -> bool:
        return True

    def connect(self, calibrate: bool = True) -> None:
        from vla_course.sim import make_env

        if self.env is None:
            self.env = make_env(task=self.task, seed=self.seed, image_size=self.image_size,
                                cameras=self.cameras, **self.task_kwargs)
        self.reset(self.seed)

    def calibrate(self) -> None:  # the sim is calibrated by construction
        pass

    def configure(self) -> None:
        pass

    def get_observation(self) -> dict:
        self._require_connected()
        obs = self._obs
        out = {k: float(v) for k, v in zip(MOTOR_KEYS, obs["observation.state"])}
        for cam in self.cameras:
            out[cam] = obs[f"observation.images.{cam}"]
        return out

    def send_action(self, action: dict) -> dict:
        self._require_connected()
        lower, upper = joint_limits_deg()
        present = np.asarray(self._obs["observation.state"], dtype=np.float32)
        goal = safe_goal(action_dict_to_array(action), present, lower, upper, self.max_relative_target)
        self._obs, _, terminated, truncated, self.last_info = self.env.step(goal)
        self.last_info = dict(self.last_info, terminated=terminated, truncated=truncated)
        return action_array_to_dict(goal)

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    # --- sim-only extras ---------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> dict:
        """Start a new episode (a new layout for a new seed)."""
        self._require_connected()
        self._obs, info = self.env.reset(seed=seed)
        self.last_info = dict(info, success=False, terminated=False, truncated=False)
        return self.get_observation()

    @property
    def instruction(self) -> str:
        self._require_connected()
        return self.env.instruction

    @property
    def fps(self) -> int:
        self._require_connected()
        return self.env.fps

    def _require_connected(self):
        if self.env is None:
            raise RobotError("SimSO100 is not connected: call robot.connect() first")

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.disconnect()


class SafeRobot:
    """Wrap a Robot-API arm: clamp targets into its limits, bound each step, give the policy's images, stop safely.

    * **Limits**: ``lower``/``upper`` if given; else the arm's LeRobot calibration
      (``robot.calibration``, :func:`calibrated_limits`; missing: ``RobotError`` naming
      ``lerobot-calibrate``); else, for a robot without one (``SimSO100``), the sim's limits.
    * ``send_action`` clamps the goal into the limits, moves at most ``max_relative_target``
      (``None``: 10) from the present position (the last observation), and sends that.
    * ``get_observation`` turns every camera frame into the policy's ``image_size`` square
      (:func:`vla_course.cameras.to_policy_image`), as the sim renders it.
    * A ``connect`` that fails raises ``RobotError`` saying what to check (port, power, cameras).
      A link that fails later (``ConnectionError``/``OSError``) stops the arm (``disconnect``:
      torque off, so the arm goes limp) and raises ``RobotError`` saying whether the stop worked.
    """

    def __init__(self, robot, max_relative_target: float | None = DEFAULT_MAX_RELATIVE_TARGET,
                 lower: np.ndarray | None = None, upper: np.ndarray | None = None, image_size: int = IMAGE_SIZE):
        self.robot = robot
        self.max_relative_target = step_bound(max_relative_target, DEFAULT_MAX_RELATIVE_TARGET)
        self.image_size = image_size
        self._given_limits = None if lower is None or upper is None else (
            np.asarray(lower, dtype=np.float32), np.asarray(upper, dtype=np.float32))
        self.lower, self.upper = self._limits()
        self._present: np.ndarray | None = None

    name = property(lambda self: getattr(self.robot, "name", "robot"))
    action_features = property(lambda self: self.robot.action_features)
    is_connected = property(lambda self: self.robot.is_connected)

    @property
    def observation_features(self) -> dict:
        size = (self.image_size, self.image_size, 3)
        return {k: v if k in MOTOR_KEYS else size for k, v in self.robot.observation_features.items()}

    @property
    def label(self) -> str:
        """How messages name the arm: ``so_follower 'vla_course_so100' on /dev/ttyACM0``."""
        robot_id, port = getattr(self.robot, "id", None), getattr(getattr(self.robot, "config", None), "port", None)
        return self.name + (f" {robot_id!r}" if robot_id else "") + (f" on {port}" if port else "")

    def connect(self, calibrate: bool = True) -> None:
        if self.robot.is_connected:
            return
        try:
            self.robot.connect(calibrate)
        except Exception as e:
            stop_error = self._stop()  # a half-open link (the port opened, a camera did not) is closed again
            port = getattr(getattr(self.robot, "config", None), "port", None)
            cameras = getattr(getattr(self.robot, "config", None), "cameras", None)
            raise RobotError(
                f"could not connect to {self.label} ({_one_line(e)}): check that "
                f"{port or 'the port'} is the arm's serial port (find it with `{FIND_PORT}`), that the arm's "
                "power supply is on and its USB cable plugged in"
                + (f", and that the cameras are there (`{FIND_CAMERAS}`)" if cameras else "")
                + (f"; closing the half-open link failed too ({_one_line(stop_error)}), "
                   "so power the arm off" if stop_error else "")) from e
        self.lower, self.upper = self._limits()  # a calibration run during connect may have changed them

    def get_observation(self) -> dict:
        obs = self._guard(self.robot.get_observation)
        self._present = np.array([obs[k] for k in MOTOR_KEYS], dtype=np.float32)
        return {k: v if k in MOTOR_KEYS else to_policy_image(v, self.image_size) for k, v in obs.items()}

    def send_action(self, action: dict) -> dict:
        if self._present is None:
            self.get_observation()
        goal = safe_goal(action_dict_to_array(action), self._present, self.lower, self.upper,
                         self.max_relative_target)
        return self._guard(self.robot.send_action, action_array_to_dict(goal))

    def disconnect(self) -> None:
        """Stop the arm: LeRobot's ``disconnect`` turns the torque off and closes the port and cameras."""
        stop_error = self._stop()
        if stop_error is not None:
            raise RobotError(f"could not stop {self.label} ({_one_line(stop_error)}): the arm may still have "
                             "torque on; switch off its power supply") from stop_error

    def _stop(self) -> Exception | None:
        """Disconnect whatever is connected; return the error if that failed, ``None`` once stopped."""
        try:
            if self.robot.is_connected:
                self.robot.disconnect()
                return None
            bus = getattr(self.robot, "bus", None)  # half connected: LeRobot's is_connected says False
            if bus is not None and bus.is_connected:
                bus.disconnect(getattr(getattr(self.robot, "config", None), "disable_torque_on_disconnect", True))
            for camera in getattr(self.robot, "cameras", {}).values():
                if camera.is_connected:
                    camera.disconnect()
        except Exception as e:
            return e
        return None

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except (ConnectionError, OSError) as e:
            stop_error = self._stop()
            outcome = ("the arm was stopped (torque off). Check the USB cable and power, then reconnect"
                       if stop_error is None else
                       f"stopping it failed too ({_one_line(stop_error)}): the arm may still have torque on; "
                       "switch off its power supply")
            raise RobotError(f"lost the connection to {self.label} ({_one_line(e)}); {outcome}.") from e

    def _limits(self) -> tuple[np.ndarray, np.ndarray]:
        if self._given_limits is not None:
            return self._given_limits
        calibration = getattr(self.robot, "calibration", None)
        if calibration is None:  # no LeRobot calibration: a robot that speaks the sim's numbers
            return joint_limits_deg()
        config = getattr(self.robot, "config", None)
        fix = calibrate_command(getattr(config, "port", None) or "/dev/ttyACM0",
                                getattr(self.robot, "id", None) or DEFAULT_ROBOT_ID,
                                getattr(config, "calibration_dir", None))
        missing = [m for m in JOINT_NAMES if m not in calibration]
        if missing:
            where = getattr(self.robot, "calibration_fpath", None)
            what = "" if len(missing) == len(JOINT_NAMES) else f" for {', '.join(missing)}"
            raise RobotError(f"{self.label} has no calibration{what}" + (f" (looked in {where})" if where else "")
                             + f": calibrate it once with `{fix}`, or pass robot_id= the id you calibrated it with")
        try:
            return calibrated_limits(calibration, getattr(self.robot, "bus", None))
        except ValueError as e:
            raise RobotError(f"{e}: recalibrate {self.label} with `{fix}`") from e

    def __getattr__(self, item):  # sim extras (reset, instruction, fps, env) pass through
        if item == "robot":
            raise AttributeError(item)
        return getattr(self.robot, item)

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.disconnect()  # raises if the arm could not be stopped
            return
        stop_error = self._stop()  # already failing: keep that error, say if the stop failed too
        if stop_error is not None:
            exc.add_note(f"stopping {self.label} failed too ({_one_line(stop_error)}): the arm may still "
                         "have torque on; switch off its power supply")


def make_robot(kind: str = "sim", *, port: str | None = None, front_camera=None, wrist_camera=None,
               max_relative_target: float | None = None, image_size: int = IMAGE_SIZE,
               calibration_dir: str | os.PathLike | None = None, robot_id: str = DEFAULT_ROBOT_ID, **sim_kwargs):
    """``make_robot("sim", task=..., seed=...)`` or a real arm::

        make_robot("so100", port="/dev/ttyACM0", front_camera="/dev/video0", wrist_camera="/dev/video2",
                   max_relative_target=5.0)

    Cameras: a device path, or an index (``0`` or ``"0"``), or a LeRobot ``CameraConfig``; they are
    named "front" and "wrist", as in the sim. ``max_relative_target``: degrees per step, ``None``
    for the default (sim: no bound; real arm: 10). The real arm needs a LeRobot calibration saved
    under ``robot_id`` (``calibrate_command()`` prints the command).
    """
    if kind == "sim":
        real = {"port": port, "front_camera": front_camera, "wrist_camera": wrist_camera,
                "calibration_dir": calibration_dir}
        given = [name for name, value in real.items() if value is not None]
        if given:
            raise ValueError(f"make_robot('sim') got real-arm options {', '.join(given)}; for a real arm use "
                             "make_robot('so100', ...); the sim renders its own cameras: cameras=('front', 'wrist')")
        return SimSO100(max_relative_target=max_relative_target, image_size=image_size, **sim_kwargs)
    if kind == "so100":
        if sim_kwargs:
            raise ValueError(f"make_robot('so100') got simulator options {', '.join(sim_kwargs)}; a real arm takes "
                             "port, front_camera, wrist_camera, max_relative_target, calibration_dir, robot_id")
        return _make_so100(port, front_camera, wrist_camera, max_relative_target, image_size,
                           calibration_dir, robot_id)
    raise ValueError(f"unknown robot kind {kind!r}; use 'sim' (MuJoCo) or 'so100' (a real arm on a serial port)")


def _make_so100(port, front_camera, wrist_camera, max_relative_target, image_size, calibration_dir,
                robot_id) -> SafeRobot:
    step = step_bound(max_relative_target, DEFAULT_MAX_RELATIVE_TARGET)
    if not port:
        raise RobotError(f"a real SO-100 needs its serial port: pass port='/dev/ttyACM0' (find it with `{FIND_PORT}`)")
    if not Path(port).exists():
        raise RobotError(f"robot port not found: {port}. Plug in the arm's USB cable and power, "
                         f"and find the port with `{FIND_PORT}`; or use the simulator (robot 'sim').")
    cameras = {name: opencv_camera(value, f"{name}_camera")
               for name, value in (("front", front_camera), ("wrist", wrist_camera)) if value is not None}
    from lerobot.robots.so_follower import SO100Follower, SO100FollowerConfig

    config = SO100FollowerConfig(
        port=port, id=robot_id, use_degrees=True, cameras=cameras,
        max_relative_target=step,  # LeRobot bounds the step on the bus too
        calibration_dir=Path(calibration_dir) if calibration_dir else None,
    )
    return SafeRobot(SO100Follower(config), max_relative_target=step, image_size=image_size)


__all__ = ["SimSO100", "SafeRobot", "RobotError", "make_robot", "observation_to_frame", "calibrated_limits",
           "calibrate_command", "step_bound", "action_array_to_dict", "action_dict_to_array", "safe_goal",
           "JOINT_NAMES"]
