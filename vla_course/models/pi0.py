r"""pi0 in miniature: a VLM backbone plus an action expert, trained with flow matching on action chunks.

One transformer, two sets of weights (see ``transformer.py``)::

    [ front img (16+8+2) | wrist img (16+8+2) | <bos> pick up the red cube ]   [ state ]  [ a_0 ... a_{H-1} ]
     └───────────────── prefix: backbone (TinyVLM) weights ─────────────────┘   └─ suffix: action-expert weights ─┘
     ar_mask:  0 0 0 ... 0                                                          1       1  0 ...  0

(The ``pi0_base`` recipe gives each camera 16 grid tokens, 8 spatial-softmax keypoint tokens and 2 instruction
keypoint tokens: see ``vision.py``.)

The prefix is bidirectional and never sees the suffix. The state token is a
block of its own. The H noisy action tokens see the prefix, the state and
each other (``masks.pi0_layout``).

A suffix action token is built from the noisy action ``x_t`` and the flow time ``t``::

    a_emb  = W_in · x_t                        (action_in_proj)
    t_emb  = sincos(t)                         (periods 4e-3 .. 4)
    token  = W_2 · swish(W_1 · [a_emb, t_emb])  (action_time_mlp_in / _out)

The expert's output at each action token goes through ``action_out_proj`` to
give the velocity ``v_theta``. The loss is MSE against ``u = noise - actions``
(see ``flow.py``).

Inference runs the prefix (and the state token, which cannot see the actions
either) once and caches their keys/values. It then does 10 Euler steps from
t=1 to t=0, each running only the H action tokens through the expert
(``sampler.py``: what is constant across the steps is computed once, before the loop).

**Chunk length H = 16 (default).** The sim runs at 30 Hz, so one chunk covers
0.53 s, about one reach or one grasp phase. pi0 uses H=50 at 50 Hz (1 s); its
DROID/LIBERO configs use 10-16. A shorter chunk keeps the sequence short
(prefix 48 image + ~10 word tokens, suffix 17), which matters at ~0.3 s per
training step on a 2-core CPU. Executing about half a chunk open-loop
(8 steps = 0.27 s) and then re-planning keeps the policy reactive. Inference
takes a few ms, so re-planning often costs nothing.

``action_loss_to_backbone=False`` turns on knowledge insulation: the flow
loss trains the expert (and the state/action projections) but leaves the
backbone, the vision encoder and the word embeddings untouched.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_model
from torch import Tensor, nn

from ..constants import ACTION_KEY, NUM_JOINTS, STATE_KEY
from .flow import euler_integrate, interpolate, sample_time, sincos_time_embedding
from .masks import make_att_2d_masks, pi0_layout
from .normalize import Normalizer
from .sampler import CachedSampler
from .tokenizer import WordTokenizer
from .transformer import Expert, ExpertConfig, joint_forward
from .vlm import TinyVLM, positions_from_pad, save_checkpoint, vlm_config_from_dict


@dataclass
class Pi0Config:
    """Action-side sizes and flow-matching settings. The backbone's sizes are in ``VLMConfig``."""

    chunk_size: int = 16  # H: 16 steps = 0.53 s at the sim's 30 Hz
    action_dim: int = NUM_JOINTS
    state_dim: int = NUM_JOINTS
    expert_width: int = 48  # half the backbone's width; heads and head_dim are the backbone's
    expert_mlp_dim: int = 128
    num_inference_steps: int = 10
    time_alpha: float = 1.5  # t ~ Beta(alpha, beta) * scale + offset
    time_beta: float = 1.0
    time_scale: float = 0.999
    time_offset: float = 0.001
    min_period: float = 4e-3
    max_period: float = 4.0
    action_loss_to_backbone: bool = True  # False = knowledge insulation (stop-gradient into the VLM)
    normalization: str = "mean_std"  # or "quantile" or "identity"
    # Weight of the localisation loss: instruction keypoint 0 of each camera regresses the named cube's pixel
    # (batch["target_xy"], from vla_course.data.localization), next to the flow loss. 0 = off.
    localization_weight: float = 0.0


class Pi0(nn.Module):
    """pi0: a :class:`TinyVLM` (the backbone) plus an action expert that shares its attention.

    Args:
        vlm: the (ideally pretrained) VLM. Its ``backbone`` weights are shared, not copied.
        config: :class:`Pi0Config`.

    Batch format (LeRobot keys):
        ``"observation.images.front"``, ``"observation.images.wrist"``: uint8 (B, 96, 96, 3) or float (B, 3, 96, 96);
        ``"observation.state"``: (B, 6) joint positions (degrees, gripper 0..100);
        ``"task"``: list[str] instructions;
        ``"action"``: (B, H, 6) target chunk (training only);
        ``"action_is_pad"``: optional bool (B, H), steps past the episode end (left out of the loss).
    """

    def __init__(self, vlm: TinyVLM, config: Pi0Config | None = None):
        super().__init__()
        self.config = cfg = config or Pi0Config()
        self.vlm = vlm
        vc = vlm.config
        we = cfg.expert_width
        self.action_expert = Expert(ExpertConfig(we, cfg.expert_mlp_dim, vc.depth, vc.num_heads, vc.head_dim))
        self.state_proj = nn.Linear(cfg.state_dim, we)
        self.action_in_proj = nn.Linear(cfg.action_dim, we)
        self.action_time_mlp_in = nn.Linear(2 * we, we)
        self.action_time_mlp_out = nn.Linear(we, we)
        self.action_out_proj = nn.Linear(we, cfg.action_dim)
        self.state_normalizer = Normalizer(cfg.state_dim, cfg.normalization)
        self.action_normalizer = Normalizer(cfg.action_dim, cfg.normalization)

    @property
    def experts(self) -> list[Expert]:
        return [self.vlm.backbone, self.action_expert]

    def set_normalization_stats(self, stats: dict) -> None:
        """Statistics in LeRobot's ``dataset.meta.stats`` format (keys ``observation.state`` and ``action``)."""
        self.state_normalizer.set_stats(stats[STATE_KEY])
        self.action_normalizer.set_stats(stats[ACTION_KEY])

    # ---- the suffix ----------------------------------------------------------------------
    def embed_state(self, state: Tensor) -> Tensor:
        """Normalised state (B, state_dim) -> one token (B, 1, expert_width)."""
        return self.state_proj(state)[:, None]

    def embed_actions(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Noisy normalised chunk (B, H, action_dim) at time t (B,) -> H tokens (B, H, expert_width)."""
        cfg = self.config
        a_emb = self.action_in_proj(x_t)
        t_emb = sincos_time_embedding(t, cfg.expert_width, cfg.min_period, cfg.max_period)
        t_emb = t_emb[:, None].expand_as(a_emb)
        h = F.silu(self.action_time_mlp_in(torch.cat([a_emb, t_emb], -1)))  # swish
        return self.action_time_mlp_out(h)

    def embed_suffix(self, state: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """[state token, H action tokens] -> (B, 1+H, expert_width). Inputs are normalised."""
        return torch.cat([self.embed_state(state), self.embed_actions(x_t, t)], 1)

    def _ar_mask(self, prefix_len: int, device) -> Tensor:
        """``[0]*prefix + [1] + [1, 0, ..., 0]``: prefix | state | actions (see ``masks.pi0_layout``)."""
        return pi0_layout(prefix_len, self.config.chunk_size).ar_mask().to(device)

    def _full_forward(self, prefix: Tensor, prefix_pad: Tensor, suffix: Tensor, insulate: bool) -> Tensor:
        """Prefix and suffix in one pass (training, and the uncached reference). It returns the action outputs."""
        pad = torch.cat([prefix_pad, torch.ones(suffix.shape[:2], dtype=torch.bool, device=suffix.device)], 1)
        mask = make_att_2d_masks(pad, self._ar_mask(prefix.shape[1], pad.device))
        outs, _ = joint_forward(self.experts, [prefix, suffix], mask, positions_from_pad(pad),
                                insulate=insulate, rope_base=self.vlm.config.rope_base)
        return outs[1][:, 1:]

    # ---- training --------------------------------------------------------------------------
    def compute_loss(self, batch: dict, noise: Tensor | None = None, time: Tensor | None = None,
                     reduction: str = "mean") -> Tensor:
        """Flow-matching loss on the normalised action chunk.

        ``reduction="none"`` returns the per-element loss (B, H, action_dim),
        for later per-sample weighting (e.g. RECAP). Padded steps
        (``action_is_pad``) are left out of the mean.
        """
        cfg = self.config
        actions = torch.as_tensor(batch[ACTION_KEY], dtype=torch.float32)
        if actions.ndim != 3 or actions.shape[1:] != (cfg.chunk_size, cfg.action_dim):
            raise ValueError(f"batch['action'] must be (B, {cfg.chunk_size}, {cfg.action_dim}), "
                             f"got {tuple(actions.shape)}")
        state = self.state_normalizer.normalize(torch.as_tensor(batch[STATE_KEY], dtype=torch.float32))
        actions = self.action_normalizer.normalize(actions)
        bsz = actions.shape[0]
        if noise is None:
            noise = torch.randn_like(actions)
        if time is None:
            time = sample_time(bsz, actions.device, cfg.time_alpha, cfg.time_beta, cfg.time_scale, cfg.time_offset)
        x_t, u_t = interpolate(actions, noise, time)

        prefix, prefix_pad = self.vlm.embed_prefix(batch, batch["task"])
        h = self._full_forward(prefix, prefix_pad, self.embed_suffix(state, x_t, time),
                               insulate=not cfg.action_loss_to_backbone)
        loss = (self.action_out_proj(h) - u_t).pow(2)
        if reduction == "none":
            return loss  # (the localisation loss is left out: it is not per action element)
        if "action_is_pad" in batch:
            keep = (~torch.as_tensor(batch["action_is_pad"], dtype=torch.bool, device=loss.device))[..., None]
            loss = (loss * keep).sum() / (keep.sum() * loss.shape[-1]).clamp(min=1)
        else:
            loss = loss.mean()
        if cfg.localization_weight and "target_xy" in batch:
            loss = loss + cfg.localization_weight * self.localization_loss(batch)
        return loss

    def localization_loss(self, batch: dict) -> Tensor:
        """Squared pixel error (in [-1, 1] units) of instruction keypoint 0 of each camera against the named
        cube's position (``batch["target_xy"]``), over the labels that are valid. Call it after ``embed_prefix``."""
        pred = self.vlm.vision.query_xy[:, :, 0]  # (B, cameras, 2)
        valid = torch.as_tensor(batch["target_valid"], dtype=pred.dtype, device=pred.device)
        err = (pred - torch.as_tensor(batch["target_xy"], dtype=pred.dtype, device=pred.device)).pow(2).sum(-1)
        return (err * valid).sum() / valid.sum().clamp(min=1)

    # ---- inference -------------------------------------------------------------------------
    @torch.inference_mode()
    def sample_actions(self, batch: dict, num_steps: int | None = None, noise: Tensor | None = None,
                       use_cache: bool = True) -> Tensor:
        """Denoise one action chunk per row. It returns (B, H, action_dim) in real units (unnormalised).

        With ``use_cache=True`` the prefix (and the state token) run once and
        each Euler step runs only the H action tokens through the expert. ``use_cache=False`` reruns the whole
        sequence at each step; it is the slow reference the tests compare with.
        """
        cfg = self.config
        num_steps = num_steps or cfg.num_inference_steps
        state = self.state_normalizer.normalize(torch.as_tensor(batch[STATE_KEY], dtype=torch.float32))
        bsz = state.shape[0]
        if noise is None:
            noise = torch.randn(bsz, cfg.chunk_size, cfg.action_dim, device=state.device)
        prefix, prefix_pad = self.vlm.embed_prefix(batch, batch["task"])

        if not use_cache:
            def velocity(x_t, t):
                h = self._full_forward(prefix, prefix_pad, self.embed_suffix(state, x_t, t), insulate=False)
                return self.action_out_proj(h)
            return self.action_normalizer.unnormalize(euler_integrate(velocity, noise, num_steps))

        # The full pi0 mask over [prefix | state | actions]; we use it in two row blocks.
        n_p, h = prefix.shape[1], cfg.chunk_size
        pad = torch.cat([prefix_pad, torch.ones(bsz, 1 + h, dtype=torch.bool, device=state.device)], 1)
        mask = make_att_2d_masks(pad, self._ar_mask(n_p, pad.device))
        pos = positions_from_pad(pad)
        # 1) Once: the prefix (backbone weights) and the state token (expert weights). Neither can see
        #    the actions, so their keys/values stay fixed while we denoise and go into the cache.
        #    (openpi recomputes the state token at each step; caching it too gives the same result.)
        _, cache = joint_forward(self.experts, [prefix, self.embed_state(state)], mask[:, : n_p + 1, : n_p + 1],
                                 pos[:, : n_p + 1], return_cache=True, rope_base=self.vlm.config.rope_base)
        # 2) Each Euler step: only the H action tokens, through the expert, against the cache
        #    (sampler.py: the same maths as joint_forward, with what is constant hoisted out of the loop).
        sampler = CachedSampler(self, cache, mask[:, n_p + 1:], pos[:, n_p + 1:], num_steps)
        return self.action_normalizer.unnormalize(sampler(noise))

    # ---- checkpoints -------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` (VLM + pi0 settings + vocabulary) and ``model.safetensors`` (weights and
        normalisation statistics)."""
        save_checkpoint(self, path, {"kind": "Pi0", "vlm": asdict(self.vlm.config), "pi0": asdict(self.config),
                                     "tokenizer": self.vlm.tokenizer.to_dict()})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Pi0:
        cfg = json.loads((Path(path) / "config.json").read_text())
        vlm = TinyVLM(WordTokenizer.from_dict(cfg["tokenizer"]), vlm_config_from_dict(cfg["vlm"]))
        model = cls(vlm, Pi0Config(**cfg["pi0"]))
        load_model(model, str(Path(path) / "model.safetensors"))
        return model
