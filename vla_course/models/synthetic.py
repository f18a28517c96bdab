"""Tiny configs and random batches in the course's batch format, for tests, smoke checks and notebooks.

These are not data: they only check that shapes, masks and gradients flow,
and that a model can memorise a handful of examples.
"""

from __future__ import annotations

import torch

from ..constants import CAMERAS, IMAGE_KEY_PREFIX, IMAGE_SIZE, NUM_JOINTS
from .pi0 import Pi0, Pi0Config
from .tokenizer import WordTokenizer
from .vlm import TinyVLM, VLMConfig

TASKS = ("pick up the red cube", "put the blue cube on the left", "stack the green cube on the yellow cube",
         "push the purple cube to the right")
QUESTIONS = ("what colour is the cube ?", "is the red cube left or right ?", "how many cubes are there ?",
             "which cube is nearest ?")
ANSWERS = ("red", "left", "three", "the blue cube")


def tiny_vlm_config() -> VLMConfig:
    """A VLM small enough to train in a unit test (a couple of ms per step)."""
    return VLMConfig(width=32, depth=2, num_heads=2, head_dim=16, mlp_dim=64, grid=2, vision_channels=(8, 16))


def course_tokenizer() -> WordTokenizer:
    tok = WordTokenizer()
    tok.add_texts(TASKS + QUESTIONS + ANSWERS)
    return tok


def tiny_pi0(chunk_size: int = 4, knowledge_insulation: bool = False, seed: int = 0, **config) -> Pi0:
    """A Pi0 small enough for unit tests; ``config`` goes to :class:`Pi0Config` (layout, delta_mask, ...)."""
    torch.manual_seed(seed)
    vlm = TinyVLM(course_tokenizer(), tiny_vlm_config())
    return Pi0(vlm, Pi0Config(chunk_size=chunk_size, expert_width=16, expert_mlp_dim=32,
                              n_action_steps=config.pop("n_action_steps", max(1, chunk_size // 2)),
                              knowledge_insulation=knowledge_insulation, **config))


def random_images(batch_size: int, seed: int = 0, image_size: int = IMAGE_SIZE) -> dict:
    """uint8 (B, S, S, 3) frames for each camera, under LeRobot keys."""
    g = torch.Generator().manual_seed(seed)
    return {IMAGE_KEY_PREFIX + cam: torch.randint(0, 256, (batch_size, image_size, image_size, 3),
                                                  dtype=torch.uint8, generator=g) for cam in CAMERAS}


def random_pi0_batch(batch_size: int, chunk_size: int, seed: int = 0) -> dict:
    """A pi0 training batch. States and actions are in SO-100-like units (degrees; gripper 0..100)."""
    g = torch.Generator().manual_seed(seed)
    batch = random_images(batch_size, seed)
    scale = torch.tensor([60.0, 40.0, 40.0, 40.0, 90.0, 50.0])[:NUM_JOINTS]
    offset = torch.tensor([0.0, -20.0, 30.0, 10.0, 0.0, 50.0])[:NUM_JOINTS]
    batch["observation.state"] = torch.randn(batch_size, NUM_JOINTS, generator=g) * scale + offset
    # smooth chunks that start near the state
    steps = torch.linspace(0, 1, chunk_size)[None, :, None]
    target = torch.randn(batch_size, 1, NUM_JOINTS, generator=g) * scale + offset
    batch["action"] = batch["observation.state"][:, None] * (1 - steps) + target * steps
    batch["task"] = [TASKS[i % len(TASKS)] for i in range(batch_size)]
    return batch


def random_vqa_batch(batch_size: int, seed: int = 0) -> dict:
    batch = random_images(batch_size, seed)
    batch["prompt"] = [QUESTIONS[i % len(QUESTIONS)] for i in range(batch_size)]
    batch["answer"] = [ANSWERS[i % len(ANSWERS)] for i in range(batch_size)]
    return batch


def stats_from_batch(batch: dict) -> dict:
    """LeRobot-style stats (mean/std/q01/q99...) computed from one batch."""
    from .normalize import Normalizer

    return {"observation.state": Normalizer.compute_stats(batch["observation.state"]),
            "action": Normalizer.compute_stats(batch["action"])}
