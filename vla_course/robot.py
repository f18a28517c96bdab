"""One Robot API for the simulated and the real SO-100.

LeRobot drives every arm through the same small interface (``lerobot.robots.Robot``)::

    robot.connect()
    obs = robot.get_observation()      # {"shoulder_pan.pos": deg, ..., "gripper.pos": 0..100, "front": HxWx3 uint8, ...}
    sent = robot.send_action(action)   # {"shoulder_pan.pos": deg, ...} -> the action actually sent
    robot.disconnect()

``SimSO100`` speaks exactly that, backed by the MuJoCo world of ``vla_course.sim``, so one control
loop (``vla_course.control.run_episode``) drives the simulation or a real arm. ``make_robot("so100",
port=...)`` returns LeRobot's own ``SO100Follower`` wrapped in ``SafeRobot``: targets clamped to the
joint limits, each step bounded (``max_relative_target``), and a clean stop when the arm goes away.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vla_course.constants import CAMERAS, IMAGE_SIZE, JOINT_NAMES, MOTOR_KEYS

# A conservative per-step bound for the real arm (degrees, or gripper units, per control step).
DEFAULT_MAX_RELATIVE_TARGET = 10.0


class RobotError(RuntimeError):
    """A robot could not be used; the message says why and what to do."""


def joint_limits_deg() -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper joint limits in LeRobot units (degrees; gripper 0..100), from the sim model."""
    from vla_course.sim import units

    return units.LIMITS_LEROBOT[:, 0].astype(np.float32), units.LIMITS_LEROBOT[:, 1].astype(np.float32)


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
    """Bound one step: at most ``max_relative_target`` from the present position, and inside the joint limits."""
    goal = np.asarray(goal, dtype=np.float32)
    if not np.all(np.isfinite(goal)):
        raise ValueError(f"action contains NaN or inf: {goal}; a policy produced invalid output")
    if max_relative_target is not None:
        goal = present + np.clip(goal - present, -max_relative_target, max_relative_target)
    return np.clip(goal, lower, upper).astype(np.float32)


class SimSO100:
    """The simulated SO-100 with LeRobot's Robot API (same keys and units as ``SO100Follower``)."""

    name = "sim_so100"

    def __init__(self, task: str = "pick_place", seed: int = 0, image_size: int = IMAGE_SIZE,
                 cameras: tuple[str, ...] = CAMERAS, max_relative_target: float | None = None, **task_kwargs):
        self.task, self.seed, self.image_size, self.cameras = task, seed, image_size, tuple(cameras)
        self.max_relative_target = max_relative_target
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
    """Wrap any Robot-API arm: clamp targets to joint limits, bound each step, stop safely.

    ``send_action`` reads the present position (from the last observation), moves at most
    ``max_relative_target`` towards the goal, clamps to ``[lower, upper]``, and sends that.
    If the link to the arm fails (``ConnectionError``/``OSError``), it disconnects (torque off on
    ``SO100Follower``) and raises ``RobotError``, so a control loop stops instead of sending blind.
    """

    def __init__(self, robot, max_relative_target: float = DEFAULT_MAX_RELATIVE_TARGET,
                 lower: np.ndarray | None = None, upper: np.ndarray | None = None):
        if max_relative_target is None or max_relative_target <= 0:
            raise ValueError("max_relative_target must be a positive number of degrees per step for a real arm")
        self.robot = robot
        self.max_relative_target = float(max_relative_target)
        default_lower, default_upper = joint_limits_deg()
        self.lower = default_lower if lower is None else np.asarray(lower, dtype=np.float32)
        self.upper = default_upper if upper is None else np.asarray(upper, dtype=np.float32)
        self._present: np.ndarray | None = None

    name = property(lambda self: getattr(self.robot, "name", "robot"))
    observation_features = property(lambda self: self.robot.observation_features)
    action_features = property(lambda self: self.robot.action_features)
    is_connected = property(lambda self: self.robot.is_connected)

    def connect(self, calibrate: bool = True) -> None:
        self._guard(self.robot.connect, calibrate)

    def get_observation(self) -> dict:
        obs = self._guard(self.robot.get_observation)
        self._present = np.array([obs[k] for k in MOTOR_KEYS], dtype=np.float32)
        return obs

    def send_action(self, action: dict) -> dict:
        if self._present is None:
            self.get_observation()
        goal = safe_goal(action_dict_to_array(action), self._present, self.lower, self.upper,
                         self.max_relative_target)
        return self._guard(self.robot.send_action, action_array_to_dict(goal))

    def disconnect(self) -> None:
        try:
            if self.robot.is_connected:
                self.robot.disconnect()
        except (ConnectionError, OSError):
            pass  # the arm is already gone; nothing more can be sent

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except (ConnectionError, OSError) as e:
            self.disconnect()
            raise RobotError(f"lost the connection to {self.name} ({e}); the arm was stopped. "
                             "Check the USB cable and power, then reconnect.") from e

    def __getattr__(self, item):  # sim extras (reset, instruction, fps, env) pass through
        return getattr(self.robot, item)

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.disconnect()


def make_robot(kind: str = "sim", *, port: str | None = None, max_relative_target: float | None = None,
               calibration_dir: str | os.PathLike | None = None, robot_id: str = "vla_course_so100",
               **sim_kwargs):
    """``make_robot("sim", task=..., seed=...)`` or ``make_robot("so100", port="/dev/ttyACM0")``."""
    if kind == "sim":
        return SimSO100(max_relative_target=max_relative_target, **sim_kwargs)
    if kind == "so100":
        return _make_so100(port, max_relative_target or DEFAULT_MAX_RELATIVE_TARGET, calibration_dir, robot_id)
    raise ValueError(f"unknown robot kind {kind!r}; use 'sim' (MuJoCo) or 'so100' (a real arm on a serial port)")


def _make_so100(port, max_relative_target, calibration_dir, robot_id) -> SafeRobot:
    if not port:
        raise RobotError("a real SO-100 needs its serial port: pass port='/dev/ttyACM0' (find it with `lerobot-find-port`)")
    if not Path(port).exists():
        raise RobotError(f"robot port not found: {port}. Plug in the arm's USB cable and power, "
                         "and find the port with `lerobot-find-port`; or use the simulator (robot 'sim').")
    from lerobot.robots.so_follower import SO100Follower, SO100FollowerConfig

    config = SO100FollowerConfig(
        port=port, id=robot_id, use_degrees=True,
        max_relative_target=float(max_relative_target),  # LeRobot bounds the step on the bus too
        calibration_dir=Path(calibration_dir) if calibration_dir else None,
    )
    return SafeRobot(SO100Follower(config), max_relative_target=max_relative_target)


__all__ = ["SimSO100", "SafeRobot", "RobotError", "make_robot", "observation_to_frame",
           "action_array_to_dict", "action_dict_to_array", "safe_goal", "JOINT_NAMES"]
