"""Cameras of the real arm, and the one place where a camera frame becomes a policy image.

The simulator renders each camera straight at the policy's resolution: a 96 x 96 x 3 uint8 RGB
array (``constants.IMAGE_SIZE``). A USB camera gives something else, typically 480 x 640 x 3.
:func:`to_policy_image` turns the second into the first, in two steps:

1. **centre-crop to a square**: keep the middle ``min(H, W)`` pixels of the long side. Cropping,
   not squashing, keeps shapes as the policy learnt them (a cube stays square); what is lost is
   the strip at each side of a wide frame, so aim the camera with the task in the middle.
2. **resize to size x size with area interpolation** (``cv2.INTER_AREA``): each output pixel is
   the mean of the input pixels it covers, the right filter for shrinking (no aliasing, no
   shimmering edges).

``SafeRobot.get_observation`` applies it to every camera, so the control loop, the recorder and the
policy get from a real arm arrays of exactly the keys, shape and dtype the sim gives.

:func:`opencv_camera` builds LeRobot's ``OpenCVCameraConfig`` from what a user knows about a
camera: a device path (``"/dev/video0"``) or an index (``0``, or ``"0"`` from a command line).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vla_course.constants import FPS

# What a plain path or index asks of the camera: 640 x 480 colour at the control rate. LeRobot needs
# all three set; pass a LeRobot CameraConfig instead to choose others (e.g. 1280 x 720, MJPG).
CAMERA_WIDTH, CAMERA_HEIGHT = 640, 480
FIND_CAMERAS = ".venv/bin/lerobot-find-cameras opencv"  # lists the cameras and saves a picture from each


def to_policy_image(frame: np.ndarray, size: int) -> np.ndarray:
    """A camera frame (H x W x 3 uint8) -> the policy's image (size x size x 3 uint8): centre-crop, then resize."""
    import cv2

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"a camera frame must be an H x W x 3 uint8 colour image, got shape {frame.shape} "
                         f"{frame.dtype}; configure the camera for RGB colour (OpenCVCameraConfig color_mode)")
    if int(size) != size or size < 1:
        raise ValueError(f"image size must be a positive number of pixels, got {size!r}")
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frame[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def opencv_camera(value, option: str):
    """``"/dev/video0"``, ``0`` or ``"0"`` -> LeRobot's ``OpenCVCameraConfig`` (a CameraConfig passes through).

    ``option`` names the argument in error messages (``front_camera``, ``wrist_camera``). A device
    path that does not exist raises ``RobotError`` (hardware missing); a value of the wrong kind,
    ``ValueError``. Nothing is opened here: ``robot.connect()`` opens the cameras.
    """
    from lerobot.cameras import CameraConfig
    from lerobot.cameras.opencv import OpenCVCameraConfig

    from vla_course.errors import RobotError

    if isinstance(value, CameraConfig):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str, os.PathLike)):
        raise ValueError(f"{option} must be a camera device path like '/dev/video0' or an index like 0, "
                         f"got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{option} index must be >= 0, got {value}; list the cameras with `{FIND_CAMERAS}`")
        index_or_path = value
    else:
        index_or_path = Path(value)
        if not index_or_path.exists():
            raise RobotError(f"{option} not found: {index_or_path}; plug the camera in, or list the cameras "
                             f"with `{FIND_CAMERAS}`")
    return OpenCVCameraConfig(index_or_path=index_or_path, fps=FPS, width=CAMERA_WIDTH, height=CAMERA_HEIGHT)
