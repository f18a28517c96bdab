"""The regression head: one answer per observation (plain L2 / L1 behaviour cloning).

Many behaviour-cloning policies predict the action chunk directly and train it
with an L2 (MSE) or L1 loss. The minimiser of the expected MSE is the
*conditional mean* E[a | o]; of the L1 loss, the per-coordinate median. When the
demonstrations disagree (half go left of the cup, half go right), the mean is
the path straight through the cup: no demonstrator ever did it, and the robot
hits the cup. That is why pi0 and Diffusion Policy use *generative* heads.

ACT (Zhao et al. 2023) trains its chunk decoder with L1 too, but as a conditional
VAE: a latent "style" variable, inferred from the demonstrated chunk during
training, carries the choice between modes. At test time ACT sets the latent to
the prior's mean, so it outputs one chunk per observation. This head is that
decoder *without* the latent: the plain regression baseline.

``sample`` ignores ``num_steps`` and has no randomness: every sample for the
same observation is the same action.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Head


def regression_loss(pred: Tensor, actions: Tensor, loss: str = "mse") -> Tensor:
    """MSE (``"mse"``, L2 squared) or mean absolute error (``"l1"``)."""
    if loss == "mse":
        return F.mse_loss(pred, actions)
    if loss == "l1":
        return F.l1_loss(pred, actions)
    raise ValueError(f"loss must be 'mse' or 'l1', got {loss!r}")


class RegressionHead(Head):
    kind = "regression"
    uses_time = False

    def __init__(self, *args, loss: str = "mse", **kwargs):
        if loss not in ("mse", "l1"):
            raise ValueError(f"loss must be 'mse' or 'l1', got {loss!r}")
        super().__init__(*args, **kwargs)
        self.loss_type = loss

    def loss(self, actions, cond, generator):
        pred = self.model(None, None, cond, batch=actions.shape[0])
        return regression_loss(pred, actions, self.loss_type)

    def _generate(self, noise, cond, num_steps, generator, return_path, **kwargs):
        out = self.model(None, None, cond, batch=noise.shape[0])
        # A "path" for regression is the jump from nowhere to the answer.
        return torch.stack([noise, out]) if return_path else out
