"""Run a :class:`Pi0` in the control loop: one frame in, one joint target out, with an action queue.

pi0 predicts a chunk of H actions at once and executes the first few open
loop before it looks again (the pi0 paper: 16 of 50 at 20 Hz, 25 of 50 at 50 Hz).
``Pi0Policy`` keeps that queue, so the control loop (``vla_course.control``)
just calls ``policy.act(frame)`` at 30 Hz, like it does for the scripted expert.

``frame`` uses LeRobot keys with no batch dimension, as ``robot.observation_to_frame`` builds it:
``observation.state`` (6,), ``observation.images.<cam>`` uint8 (96, 96, 3) and ``task`` str.

A pi0.5 model (``layout="subtask"``) acts in two stages, pi(a | o, subtask) pi(subtask | o, prompt): the
backbone first writes the next subtask in words (:meth:`Pi0.decode_subtask`), then the expert denoises a
chunk that sees that text. *When* to think again is a choice (``think_every``, measured in notebook 07):
before every chunk (the default), or every N control steps, dropping what is left of the queued chunk
when the words change. ``policy.subtask`` is the latest thought and ``policy.thoughts`` its history.
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
        think_every: pi0.5 models only: re-decode the subtask every this many control steps (a new text
            replaces the rest of the queued chunk); None: before every chunk.
        condition: words written after the instruction (RECAP: ``"advantage: positive"``).
        guidance: with ``condition``, classifier-free guidance of strength beta against the bare instruction
            (``Pi0.sample_actions(guidance=...)``; two rows per chunk).
    """

    def __init__(self, model: Pi0, n_action_steps: int | None = None, num_steps: int = 10, seed: int | None = None,
                 think_every: int | None = None, condition: str | None = None, guidance: float | None = None):
        h = model.config.chunk_size
        self.model = model.eval()
        self.n_action_steps = n_action_steps or model.config.n_action_steps
        if not 1 <= self.n_action_steps <= h:
            raise ValueError(f"n_action_steps must be in 1..{h}, got {self.n_action_steps}")
        self.num_steps = num_steps
        self.cameras = tuple(model.vlm.config.cameras)
        self.seed = seed
        self.hierarchical = model.answer_block == "subtask"
        if think_every is not None and not (self.hierarchical and think_every >= 1):
            raise ValueError(f"think_every must be an int >= 1, for a pi0.5 (subtask) model; got {think_every!r} "
                             f"for layout {model.config.layout!r}")
        self.think_every = think_every
        if guidance is not None and not condition:
            raise ValueError("guidance needs a condition to guide towards, e.g. condition='advantage: positive'")
        self.condition, self.guidance = condition, guidance
        self.reset()

    def reset(self) -> None:
        self.queue: deque[np.ndarray] = deque()
        self.generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        self.steps = 0
        self.subtask: str | None = None  # pi0.5: the latest decoded subtask
        self.thoughts: list[tuple[int, str]] = []  # (control step, subtask text) at every decode

    @property
    def subtask_words(self) -> str:
        """What the model's subtasks say ("phase" or "instruction" words; the evaluator's oracle speaks them)."""
        return self.model.config.subtask_words

    def think(self, batch: dict) -> str:
        """pi0.5's high level: decode the next subtask and remember it."""
        self.subtask = self.model.decode_subtask(batch)[0]
        self.thoughts.append((self.steps, self.subtask))
        return self.subtask

    def frame_to_batch(self, frame: dict) -> dict:
        """Add the batch dimension and turn arrays into tensors."""
        batch = {STATE_KEY: torch.as_tensor(np.asarray(frame[STATE_KEY], dtype=np.float32))[None],
                 "task": [frame["task"]]}
        for cam in self.cameras:
            batch[IMAGE_KEY_PREFIX + cam] = torch.as_tensor(np.asarray(frame[IMAGE_KEY_PREFIX + cam]))[None]
        return batch

    def act(self, frame: dict) -> np.ndarray:
        batch = None
        if self.hierarchical and self.think_every and self.steps % self.think_every == 0:
            batch = self.frame_to_batch(frame)
            before = self.subtask
            if self.think(batch) != before:
                self.queue.clear()  # new words: act on them now
        if not self.queue:
            batch = batch or self.frame_to_batch(frame)
            if self.hierarchical:
                if not self.think_every:
                    self.think(batch)
                batch["answer"] = [self.subtask]
            cfg = self.model.config
            noise = torch.randn(1, cfg.chunk_size, cfg.action_dim, generator=self.generator)
            guidance = None
            if self.condition:  # the condition after the instruction; the instruction keypoints read the bare one
                batch = dict(batch, instruction=list(batch["task"]))
                cond = dict(batch, task=[f"{t} {self.condition}" for t in batch["task"]])
                if self.guidance is not None:  # the conditioned row, then the bare one
                    batch = {k: (torch.cat([cond[k], batch[k]]) if torch.is_tensor(batch[k]) else cond[k] + batch[k])
                             for k in batch}
                    guidance = self.guidance
                else:
                    batch = cond
            chunk = self.model.sample_actions(batch, num_steps=self.num_steps, noise=noise, guidance=guidance)
            self.queue.extend(chunk[0, : self.n_action_steps].numpy().astype(np.float32))
        self.steps += 1
        return self.queue.popleft()


class OracleHighLevel(Pi0Policy):
    """A pi0.5 policy whose high level is the scene itself: before every chunk the subtask is the one the
    privileged sim state calls for (``oracle_subtask``), in the model's words; the low level acts on it.
    ``evaluate_policy`` hands it the scene (``bind_env``); pi0.5's ablation has a human high level here."""

    def bind_env(self, env) -> None:
        self.env = env

    def think(self, batch: dict) -> str:
        from vla_course.sim.expert import oracle_subtask

        self.subtask = oracle_subtask(self.env.scene_state(), self.subtask_words)
        self.thoughts.append((self.steps, self.subtask))
        return self.subtask
