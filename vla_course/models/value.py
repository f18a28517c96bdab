"""RECAP's value function in miniature: how close is this moment to success? (pi*0.6, notebook 08)

pi*0.6 trains a separate VLM to predict, from the images, the instruction and the state, the *normalised
return*: with a reward of -1 per step, 0 at success and a large negative at failure, the return of a frame
is minus the steps still to go (minus the penalty if the episode fails), divided per task by the largest
it can be, so every value lies in [-1, 0] (``vla_course.recap.returns``). It is **distributional**: the head
predicts a categorical distribution over ``bins`` evenly spaced returns (pi*0.6: 201), trained with
cross-entropy against the bin of the Monte-Carlo return, and the value is the distribution's mean::

    [image tokens | <bos> instruction state_3 state_17 ...]  ->  backbone  ->  last prefix token
                                                                              -> Linear -> softmax over B bins
    V(o) = sum_b p_b(o) * centre_b,   centre_b = -1 + b / (B - 1)

The backbone is a :class:`TinyVLM` (start it from ``vlm_base``: its knowledge of cubes, bin and gripper is
what tells a held cube from a dropped one); the state goes in as words, as pi0.5 writes it
(:func:`~vla_course.models.normalize.discretize`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..constants import NUM_JOINTS, STATE_KEY
from .masks import make_att_2d_masks
from .normalize import Normalizer, discretize
from .pi0 import STATE_WORD
from .serialization import config_from_dict, load_weights, read_config, save_checkpoint
from .transformer import joint_forward, positions_from_pad
from .vlm import TinyVLM, tokenizer_from_config, vlm_config_from_dict

RETURN_KEY = "return"  # a batch's normalised Monte-Carlo return per row, in [-1, 0] (training only)


@dataclass
class ValueConfig:
    bins: int = 201  # pi*0.6's number of return bins
    state_bins: int = 32  # the state as words: this many bins per joint
    state_dim: int = NUM_JOINTS
    normalization: str = "quantile"


class ValueFunction(nn.Module):
    """``V(o)`` for observations with LeRobot keys (both cameras, ``observation.state``, ``task``): a TinyVLM
    backbone and a linear head over ``bins`` return bins. ``compute_loss(batch)`` needs ``batch["return"]``."""

    def __init__(self, vlm: TinyVLM, config: ValueConfig | None = None):
        super().__init__()
        self.config = cfg = config or ValueConfig()
        if cfg.bins < 2:
            raise ValueError(f"bins must be >= 2, got {cfg.bins}")
        self.vlm = vlm
        self.head = nn.Linear(vlm.config.width, cfg.bins)
        self.state_normalizer = Normalizer(cfg.state_dim, cfg.normalization)
        words = [STATE_WORD.format(b) for b in range(cfg.state_bins)]
        if any(w not in vlm.tokenizer for w in words):
            vlm.tokenizer.add_words(words)
            vlm.resize_token_embeddings()
        self._state_word_ids = torch.tensor([vlm.tokenizer.word_to_id[w] for w in words])
        self.register_buffer("centres", torch.linspace(-1.0, 0.0, cfg.bins), persistent=False)

    def set_normalization_stats(self, stats: dict) -> None:
        self.state_normalizer.set_stats(stats[STATE_KEY])

    def return_bins(self, returns: Tensor) -> Tensor:
        """The bin of each normalised return (the nearest centre)."""
        r = torch.as_tensor(returns, dtype=torch.float32).clamp(-1.0, 0.0)
        return ((r + 1.0) * (self.config.bins - 1)).round().long()

    def logits(self, batch: dict) -> Tensor:
        """(B, bins): the backbone's last prefix token through the head."""
        state = self.state_normalizer.normalize(torch.as_tensor(batch[STATE_KEY], dtype=torch.float32))
        words = self._state_word_ids[discretize(state, self.config.state_bins, self.config.normalization)]
        prefix, pad = self.vlm.embed_prefix(batch, list(batch["task"]), append_ids=words.tolist())
        mask = make_att_2d_masks(pad, torch.zeros(pad.shape[1], dtype=torch.long, device=pad.device))
        (h,), _ = joint_forward([self.vlm.backbone], [prefix], mask, positions_from_pad(pad),
                                rope_base=self.vlm.config.rope_base)
        last = pad.long().sum(1) - 1
        return self.head(h[torch.arange(h.shape[0]), last])

    def compute_loss(self, batch: dict, reduction: str = "mean") -> dict[str, Tensor]:
        """Cross-entropy against the bin of ``batch["return"]``: ``{"loss", "value"}`` (scalars, or (B,))."""
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        if RETURN_KEY not in batch:
            raise KeyError(f"a value batch needs {RETURN_KEY!r} (normalised returns, vla_course.recap.returns)")
        ce = F.cross_entropy(self.logits(batch), self.return_bins(batch[RETURN_KEY]), reduction=reduction)
        return {"loss": ce, "value": ce}

    def values(self, batch: dict) -> Tensor:
        """V(o) per row, in [-1, 0]: the mean of the predicted distribution."""
        return self.logits(batch).softmax(-1) @ self.centres

    # ---- checkpoints -------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        save_checkpoint(self, path, {"kind": "ValueFunction", "vlm": asdict(self.vlm.config),
                                     "value": asdict(self.config), "tokenizer": self.vlm.tokenizer.to_dict()})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ValueFunction:
        cfg = read_config(path)
        vlm = TinyVLM(tokenizer_from_config(cfg, path), vlm_config_from_dict(cfg.get("vlm"), path))
        model = cls(vlm, config_from_dict(ValueConfig, cfg.get("value"), f"{Path(path) / 'config.json'} 'value'"))
        load_weights(model, path)
        if not bool(model.state_normalizer.is_set):
            raise ValueError(f"{Path(path) / 'model.safetensors'} holds no state normalisation statistics; "
                             "re-make the checkpoint")
        return model
