"""Shared constants: one place for joint names, units, rates and sizes.

The sim speaks LeRobot's keys and units at its boundary (SO100Follower with
``use_degrees=True``): joints in degrees, the gripper in 0..100 (0 = closed).
"""

# LeRobot's SO-100 motor names, in order (SO100Follower.bus.motors).
JOINT_NAMES = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
# Keys of SO100Follower's observation/action dicts: "<joint>.pos".
MOTOR_KEYS = tuple(f"{name}.pos" for name in JOINT_NAMES)
NUM_JOINTS = len(JOINT_NAMES)

# LeRobot dataset feature keys.
STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_KEY_PREFIX = "observation.images."
CAMERAS = ("front", "wrist")

# Control and rendering defaults.
FPS = 30  # control rate of the sim (Hz), LeRobot's default recording rate for SO-100
IMAGE_SIZE = 96  # policy camera resolution (square)
VIDEO_SIZE = 256  # resolution of demo videos

# Cube colours every scene can draw from (RGBA in 0..1).
COLORS = {
    "red": (0.85, 0.12, 0.12, 1.0),
    "green": (0.15, 0.70, 0.20, 1.0),
    "blue": (0.15, 0.30, 0.90, 1.0),
    "yellow": (0.95, 0.85, 0.10, 1.0),
    "purple": (0.60, 0.20, 0.75, 1.0),
}

# The words a pi0.5 subtask is written in: the expert's phases ("pick up the red cube" / "put it in the bin") or a
# one-cube instruction ("put the red cube in the bin"); sim.expert maps one to the other, Pi0Config records which.
SUBTASK_WORDS = ("phase", "instruction")
