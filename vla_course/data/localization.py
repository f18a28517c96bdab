"""Where is the named cube in each camera? Labels for a localisation loss, computed from the sim.

pi0.5 co-trains its VLM on web data that includes *object localisation* (boxes, points), so the backbone
keeps knowing where the things named in text are. Our miniature version: for each recorded frame, the
pixel where the instruction's cube appears in the front and the wrist camera, from privileged sim state.
``Pi0`` can then train its instruction keypoints (``vision.py``) to land on that pixel
(``Pi0Config.localization_weight``), next to the flow-matching loss.

The recording keeps only what a real arm gives (images, joint state, actions), so the labels are
rebuilt afterwards: episode ``e`` of a recording made with layout seed ``s`` used layout ``s + e``
(``record_dataset``), which gives the cubes' starting positions; the joint state of each frame gives
the wrist camera's pose (forward kinematics). A label is valid while the cube has not moved: from
the episode's start until the jaws first close, and only where the cube is in view::

    frame:      0 ........ 40 ........ 75 (jaws close) .......... 120
    valid:      T  T  T  T  T  T  T  T  F  F  F  F  F  F  F  F  F  F
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch
from torch import Tensor

from vla_course.constants import CAMERAS

GRIPPER_CLOSING = 30.0  # gripper state (0..100) below which the jaws count as closed on the cube


def target_pixels(data, layout_seeds: dict[int, int], task: str = "pick_place", image_size: int = 96,
                  task_kwargs: dict | None = None) -> tuple[Tensor, Tensor]:
    """Per frame of a :class:`~vla_course.data.chunks.ChunkDataset`, the named cube's pixel in each camera.

    Args:
        layout_seeds: episode index -> the layout seed it was recorded with.

    Returns:
        ``xy`` float (N, cameras, 2) in [-1, 1] (x right, y down, the convention of ``vision.soft_argmax``)
        and ``valid`` bool (N, cameras).
    """
    from vla_course.sim import make_env, units

    n, cams = len(data.state), list(CAMERAS)
    xy, valid = torch.zeros(n, len(cams), 2), torch.zeros(n, len(cams), dtype=torch.bool)
    env = make_env(task=task, seed=0, image_size=image_size, cameras=(), **(task_kwargs or {}))
    try:
        episodes = data.episode_index.numpy()
        starts = np.flatnonzero(np.r_[True, episodes[1:] != episodes[:-1]])
        ends = np.r_[starts[1:], n]
        for s, e in zip(starts, ends):
            ep = int(episodes[s])
            if ep not in layout_seeds:
                raise KeyError(f"no layout seed for episode {ep}: pass every episode's seed in layout_seeds")
            env.reset(seed=layout_seeds[ep])
            cube = env.cube_pos(env.layout.targets[0])
            closed = np.flatnonzero(data.state[s:e, -1].numpy() < GRIPPER_CLOSING)
            stop = s + (int(closed[0]) if len(closed) else e - s)
            for i in range(s, stop):
                env.data.qpos[env.arm_qpos] = units.lerobot_to_rad(data.state[i].numpy())
                mujoco.mj_kinematics(env.model, env.data)  # the bodies follow the joints ...
                mujoco.mj_camlight(env.model, env.data)  # ... and so do the cameras
                for c, cam in enumerate(cams):
                    u, v = env.project(cube, cam, image_size)
                    if 0 <= u <= image_size - 1 and 0 <= v <= image_size - 1:
                        xy[i, c] = torch.tensor([u, v]) / (image_size - 1) * 2 - 1
                        valid[i, c] = True
    finally:
        env.close()
    return xy, valid
