"""Run a :class:`Pi0` in the control loop: one frame in, one joint target out, with an action queue.

pi0 predicts a chunk of H actions at once and executes the first few open
loop before it looks again (the pi0 paper: 16 of 50 at 20 Hz, 25 of 50 at 50 Hz).
``Pi0Policy`` keeps that queue, so the control loop (``vla_course.control``)
just calls ``policy.act(frame)`` at 30 Hz, like it does for the scripted expert.

``frame`` uses LeRobot keys with no batch dimension, as ``robot.observation_to_frame`` builds it:
``observation.state`` (6,), ``observation.images.<cam>`` uint8 (96, 96, 3) and ``task`` str.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from ..constants import IMAGE_KEY_PREFIX, STATE_KEY
from .pi0 import Pi0


class Pi0Policy:
    """``reset()`` then ``act(frame) -> np.ndarray (6,)`` **absolute** joint targets (degrees, gripper 0..100),
    for every checkpoint: a model trained on relative actions converts back itself (``Pi0Config.delta_mask``).

    Args:
        model: a trained :class:`Pi0` (its normalisation statistics must be set).
        n_action_steps: how many actions of each chunk to execute before re-planning
            (at most ``chunk_size``; default: the model's ``config.n_action_steps``, which its recipe measured).
        num_steps: Euler steps per chunk (10 in pi0).
        seed: seeds the initial noise, so rollouts can be reproduced.
    """

    def __init__(self, model: Pi0, n_action_steps: int | None = None, num_steps: int = 10, seed: int | None = None):
        h = model.config.chunk_size
        self.model = model.eval()
        self.n_action_steps = n_action_steps or model.config.n_action_steps
        if not 1 <= self.n_action_steps <= h:
            raise ValueError(f"n_action_steps must be in 1..{h}, got {self.n_action_steps}")
        self.num_steps = num_steps
        self.cameras = tuple(model.vlm.config.cameras)
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self.queue: deque[np.ndarray] = deque()
        self.generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None

    def frame_to_batch(self, frame: dict) -> dict:
        """Add the batch dimension and turn arrays into tensors."""
        batch = {STATE_KEY: torch.as_tensor(np.asarray(frame[STATE_KEY], dtype=np.float32))[None],
                 "task": [frame["task"]]}
        for cam in self.cameras:
            batch[IMAGE_KEY_PREFIX + cam] = torch.as_tensor(np.asarray(frame[IMAGE_KEY_PREFIX + cam]))[None]
        return batch

    def act(self, frame: dict) -> np.ndarray:
        if not self.queue:
            cfg = self.model.config
            noise = torch.randn(1, cfg.chunk_size, cfg.action_dim, generator=self.generator)
            chunk = self.model.sample_actions(self.frame_to_batch(frame), num_steps=self.num_steps, noise=noise)
            self.queue.extend(chunk[0, : self.n_action_steps].numpy().astype(np.float32))
        return self.queue.popleft()
