r"""Relative actions (openpi's ``DeltaActions``): predict where the arm goes *from here*.

An SO-100 chunk in absolute joint targets spans the whole workspace (shoulder_lift from -150 to -40
degrees, say), so a normalised error of 0.05 is several degrees. Relative to the state at the chunk's
start, the same chunk spans a few degrees, and the same normalised error is a fraction of one. pi0 (and
this course's ``pi0_base``) therefore predicts the five arm joints relative to the state the chunk was
planned from, and the gripper absolute::

    delta_mask = (True, True, True, True, True, False)          # 5 arm joints relative, gripper absolute
    relative   = actions - state[:, None, :] * delta_mask       # (B, H, D), training targets
    absolute   = relative + state[:, None, :] * delta_mask      # what the robot is sent

The mask is part of the model's config (``Pi0Config.delta_mask``): the model converts its own targets
in ``compute_loss`` and converts back in ``sample_actions``, so every caller, from the control loop to a
notebook, gets absolute joint targets. One conversion, one place.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_relative(actions: Tensor, state: Tensor, delta_mask) -> Tensor:
    """Absolute chunk (B, H, D) -> relative to ``state`` (B, D) where ``delta_mask`` is True (None: unchanged)."""
    if delta_mask is None:
        return actions
    m = torch.as_tensor(delta_mask, dtype=actions.dtype, device=actions.device)
    return actions - state[:, None, :] * m


def to_absolute(actions: Tensor, state: Tensor, delta_mask) -> Tensor:
    """Inverse of :func:`to_relative`: add the state back where ``delta_mask`` is True."""
    if delta_mask is None:
        return actions
    m = torch.as_tensor(delta_mask, dtype=actions.dtype, device=actions.device)
    return actions + state[:, None, :] * m
