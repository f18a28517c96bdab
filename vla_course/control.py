"""The control loop: observe, act, send. The same loop drives the simulator and a real arm.

    robot.connect()                                    # the caller's: `with robot:`
    policy.reset()
    while not done:
        obs = robot.get_observation()                  # motor keys + camera images
        frame = observation_to_frame(obs, task)        # LeRobot keys: observation.state, observation.images.*, task
        action = policy.act(frame)                     # 6 absolute joint targets (degrees, gripper 0..100)
        sent = robot.send_action(action_dict)          # clamped / bounded by the robot
    robot.disconnect()                                 # the caller's: the end of `with robot:`

On the simulator the loop runs as fast as the physics. On a real arm it keeps the control rate
(``realtime=True``) and, if anything fails or you press Ctrl-C, ``run_episode`` disconnects the
arm (LeRobot's ``disconnect``: torque off, so the arm goes limp; keep it over the table) and
re-raises the error. An episode that ends normally leaves the arm connected, holding its last
target, for the caller to disconnect (``with robot:`` does, torque off too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vla_course.constants import IMAGE_KEY_PREFIX
from vla_course.robot import RobotError, action_array_to_dict, action_dict_to_array, observation_to_frame


@dataclass
class EpisodeResult:
    success: bool
    steps: int
    instruction: str
    seconds: float  # simulated/real time of the episode (steps / fps)
    frames: list = field(default_factory=list, repr=False)  # video frames, if a renderer was given


def run_episode(robot, policy, *, task: str | None = None, max_steps: int | None = None, fps: int | None = None,
                realtime: bool = False, on_step=None, render=None) -> EpisodeResult:
    """Run one episode of ``policy`` on a connected ``robot``.

    ``on_step(frame, action)`` is called for every step (the recorder uses it), ``render()`` may
    return a video frame per step. Success and the end of the episode come from the simulator's
    ``last_info``; on a real arm the loop runs ``max_steps`` steps (default: 10 s of control).
    On a real arm (a robot without ``simulated = True``) an error or Ctrl-C disconnects it
    (torque off) before the error propagates.
    """
    try:
        return _run(robot, policy, task, max_steps, fps, realtime, on_step, render)
    except BaseException as error:  # KeyboardInterrupt included: a real arm must not keep holding torque
        if not getattr(robot, "simulated", False):
            _stop(robot, error)
        raise


def _stop(robot, error: BaseException) -> None:
    """Disconnect a real arm after ``error``; if that fails too, say so on ``error``."""
    try:
        if getattr(robot, "is_connected", True):
            robot.disconnect()
    except Exception as stop_error:
        error.add_note(f"stopping the arm failed too: {stop_error}")


def _run(robot, policy, task, max_steps, fps, realtime, on_step, render) -> EpisodeResult:
    task = task if task is not None else getattr(robot, "instruction", "")
    env = getattr(robot, "env", None)
    fps = fps or getattr(env, "fps", None) or 30
    if max_steps is None:
        max_steps = getattr(env, "max_episode_steps", None) or 10 * fps
    policy.reset()
    frames = [render()] if render else []
    success, steps = False, 0
    period = 1.0 / fps
    for steps in range(1, max_steps + 1):
        t0 = time.perf_counter()
        frame = observation_to_frame(robot.get_observation(), task)
        if steps == 1:
            _check_cameras(policy, frame)
        action = np.asarray(policy.act(frame), dtype=np.float32)
        sent = robot.send_action(action_array_to_dict(action))
        if on_step is not None:
            on_step(frame, action_dict_to_array(sent))
        if render:
            frames.append(render())
        info = getattr(robot, "last_info", {}) or {}
        success = bool(info.get("success", False))
        if info.get("terminated") or info.get("truncated"):
            break
        if realtime:
            time.sleep(max(0.0, period - (time.perf_counter() - t0)))
    return EpisodeResult(success=success, steps=steps, instruction=task, seconds=steps / fps, frames=frames)


def _check_cameras(policy, frame: dict) -> None:
    """A policy that looks through cameras the robot does not have fails here, before the arm moves."""
    missing = [cam for cam in getattr(policy, "cameras", ()) if IMAGE_KEY_PREFIX + cam not in frame]
    if missing:
        have = [key.removeprefix(IMAGE_KEY_PREFIX) for key in frame if key.startswith(IMAGE_KEY_PREFIX)]
        raise RobotError(f"the policy needs the cameras {', '.join(missing)} but the robot has {have or 'none'}: "
                         "name them, make_robot('so100', ..., front_camera='/dev/video0', wrist_camera='/dev/video2')"
                         " (the sim: make_robot('sim', cameras=('front', 'wrist')))")
