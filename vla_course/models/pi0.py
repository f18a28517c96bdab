r"""pi0 in miniature, and the one VLA core every later chapter adds to: a sequence of named blocks, a dict of losses.

One transformer, two sets of weights (see ``transformer.py``); one sequence of blocks (see ``masks.py``)::

    [ front img | wrist img | <bos> put the red cube in the bin (state words) ] [ answer ... <eos> ]  [ state ] [ a_0 ... a_{H-1} ]
     └────────────────────── prefix: backbone (TinyVLM) weights ───────────────┘ └─ backbone, causal ┘  └─ suffix: action expert ─┘

* **prefix** (bidirectional): image tokens of both cameras, the instruction, and optionally the state
  written as words (``discrete_state_bins``: pi0.5 and KI put the state in the prefix as text).
* **answer** (optional, causal, decoded by the backbone with the LM head, cross-entropy loss): FAST action
  tokens in Knowledge Insulation (``layout="knowledge_insulation"``), the next subtask in words in pi0.5
  (``layout="subtask"``). Plain pi0 (``layout="pi0"``) has none.
* **state** and **actions** (the action expert's weights): the state token, then the H noisy action
  tokens, trained with flow matching. Who sees whom is the layout's business (``masks.vla_layout``): in
  KI the actions do not see the FAST tokens; in pi0.5 they act on the subtask.

A suffix action token is built from the noisy action ``x_t`` and the flow time ``t``::

    a_emb  = W_in · x_t                        (action_in_proj)
    t_emb  = sincos(t)                         (periods 4e-3 .. 4)
    token  = W_2 · swish(W_1 · [a_emb, t_emb])  (action_time_mlp_in / _out)

The expert's output at each action token goes through ``action_out_proj`` to give the velocity
``v_theta``; the flow loss is MSE against ``u = noise - actions`` (``heads/flow.py``).

**Losses as a dict.** ``compute_loss(batch)`` returns ``{"loss": weighted total, "flow": ..., "text" or
"fast": ..., "localization": ...}`` (the terms present in this model and batch; weights in the config).
``reduction="none"`` gives every term per sample, shape (B,), for weighting (RECAP, AWR). A batch without
actions (VQA) trains the backbone's prefix-LM loss only (``"text"``), so one loop co-trains both.

**Knowledge insulation** (``knowledge_insulation=True``): the expert's queries see the backbone's keys and
values through a stop-gradient, so the flow loss trains the expert but leaves the backbone, the image
encoder and the word embeddings untouched.

**Relative actions** (``delta_mask``, see ``relative.py``) are part of the config: ``compute_loss`` takes
absolute chunks and converts them itself, ``sample_actions`` returns absolute joint targets.

Inference runs the backbone tokens (and the state token, which cannot see the actions either) once and
caches their keys/values. It then does 10 Euler steps from t=1 to t=0, each running only the H action
tokens through the expert (``sampler.py``: what is constant across the steps is computed once).

**Chunk length H = 16 (default).** The sim runs at 30 Hz, so one chunk covers 0.53 s, about one reach or
one grasp phase. pi0 uses H=50 at 50 Hz (1 s); its DROID/LIBERO configs use 10-16. A short chunk keeps the
sequence short, which matters at ~0.3 s per training step on a 2-core CPU; the policy executes
``n_action_steps`` of each chunk open loop, then re-plans (the recipe measures the best value).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..constants import ACTION_KEY, NUM_JOINTS, STATE_KEY, SUBTASK_WORDS
from ..heads.flow import euler_integrate, interpolate, sample_time, velocity_target
from ..heads.nets import sincos_time_embedding
from .masks import LAYOUTS, vla_layout
from .normalize import Normalizer, discretize
from .relative import to_absolute, to_relative
from .sampler import CachedSampler
from .serialization import config_from_dict, load_weights, read_config, save_checkpoint
from .subtask import high_level_batch, low_level_batch
from .transformer import Expert, ExpertConfig, joint_forward, positions_from_pad
from .vlm import (TinyVLM, answer_cross_entropy, shifted_answer_hidden, tokenizer_from_config,
                  vlm_config_from_dict)

STATE_WORD = "state_{}"  # the words of a discretised state: state_0 .. state_{bins-1}
FAST_FILE = "fast_tokenizer.json"  # a Knowledge Insulation checkpoint's fitted FAST tokenizer, beside config.json


@dataclass
class Pi0Config:
    """The action side, the layout and the losses. The backbone's sizes are in ``VLMConfig``."""

    chunk_size: int = 16  # H: 16 steps = 0.53 s at the sim's 30 Hz
    action_dim: int = NUM_JOINTS
    state_dim: int = NUM_JOINTS
    expert_width: int = 48  # half the backbone's width; heads and head_dim are the backbone's
    expert_mlp_dim: int = 128
    num_inference_steps: int = 10
    n_action_steps: int = 8  # actions of each chunk executed before re-planning (the recipe measures it)
    delta_mask: tuple[bool, ...] | None = None  # relative actions: True = predicted relative to the state
    time_alpha: float = 1.5  # t ~ Beta(alpha, beta) * scale + offset
    time_beta: float = 1.0
    time_scale: float = 0.999
    time_offset: float = 0.001
    min_period: float = 4e-3
    max_period: float = 4.0
    normalization: str = "mean_std"  # or "quantile" or "identity"
    layout: str = "pi0"  # "pi0", "knowledge_insulation" or "subtask" (masks.LAYOUTS)
    # pi0.5 ("subtask" layout) only: the action expert reads the subtask as its instruction, in a second
    # sequence [images, subtask | state | actions], instead of after the prompt in one (models/subtask.py)
    subtask_as_prompt: bool = False
    subtask_words: str = "phase"  # what the subtask labels say: one of constants.SUBTASK_WORDS
    knowledge_insulation: bool = False  # stop-gradient: the flow loss never reaches the backbone
    discrete_state_bins: int = 0  # > 0: the state also goes into the prefix as words, this many bins per joint
    max_fast_tokens: int = 0  # > 0: FAST targets cut to this many tokens (frequency-major: the cut drops the
    # highest frequencies first, a low-pass filter), which bounds the sequence a training step pays for
    flow_weight: float = 1.0
    text_weight: float = 1.0  # cross-entropy of the backbone's answer block (text or FAST tokens)
    # Weight of the localisation loss: instruction keypoint 0 of each camera regresses the named cube's pixel
    # (batch["target_xy"], from vla_course.data.localization), next to the flow loss. 0 = off.
    localization_weight: float = 0.0

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; use one of {sorted(LAYOUTS)}")
        if self.subtask_as_prompt and (self.layout != "subtask" or self.discrete_state_bins):
            raise ValueError(f"subtask_as_prompt is pi0.5's (layout 'subtask', no state words); this config has "
                             f"layout {self.layout!r}, discrete_state_bins={self.discrete_state_bins}")
        if self.subtask_words not in SUBTASK_WORDS:
            raise ValueError(f"unknown subtask_words {self.subtask_words!r}; use one of {SUBTASK_WORDS}")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(f"n_action_steps must be in 1..{self.chunk_size}, got {self.n_action_steps}")
        if self.delta_mask is not None:
            self.delta_mask = tuple(bool(m) for m in self.delta_mask)
            if len(self.delta_mask) != self.action_dim:
                raise ValueError(f"delta_mask needs {self.action_dim} entries, got {len(self.delta_mask)}")


class Pi0(nn.Module):
    """pi0: a :class:`TinyVLM` (the backbone) plus an action expert that shares its attention.

    Args:
        vlm: the (ideally pretrained) VLM. Its ``backbone`` weights are shared, not copied.
        config: :class:`Pi0Config`.

    Batch format (LeRobot keys):
        ``"observation.images.front"``, ``"observation.images.wrist"``: uint8 (B, 96, 96, 3) or float (B, 3, 96, 96);
        ``"observation.state"``: (B, 6) joint positions (degrees, gripper 0..100);
        ``"task"``: list[str] instructions;
        ``"action"``: (B, H, 6) absolute target chunk (training only);
        ``"action_is_pad"``: optional bool (B, H), steps past the episode end (left out of the loss);
        ``"answer"``: optional list[str], the backbone's answer block (e.g. the subtask), or
        ``"answer_ids"`` + ``"answer_pad"``: the same as token ids (B, M) (e.g. FAST tokens in the vocabulary).
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
        if cfg.discrete_state_bins:
            words = [STATE_WORD.format(b) for b in range(cfg.discrete_state_bins)]
            if any(w not in vlm.tokenizer for w in words):
                vlm.tokenizer.add_words(words)
                vlm.resize_token_embeddings()
            self._state_word_ids = torch.tensor([vlm.tokenizer.word_to_id[w] for w in words])
        self.fast_tokenizer = None  # Knowledge Insulation: makes the FAST targets from each batch's own chunk
        self.fast_word_ids: list[int] = []  # vocabulary id of FAST token k

    def set_fast_tokenizer(self, tokenizer) -> list[int]:
        """Attach a fitted :class:`~vla_course.models.fast.FASTTokenizer` (fitted on *relative* chunks in data
        units when ``delta_mask`` is set: the chunks as the model predicts them). Its tokens become words of the
        backbone's vocabulary ("fast_0", ...; new rows, old ids unchanged), ``compute_loss`` then encodes every
        batch's own action chunk as the answer block, and the tokenizer is saved with the checkpoint."""
        from .fast import add_fast_words

        if tokenizer.horizon != self.config.chunk_size or tokenizer.action_dim != self.config.action_dim:
            raise ValueError(f"the FAST tokenizer was fitted on ({tokenizer.horizon}, {tokenizer.action_dim}) chunks; "
                             f"this model predicts ({self.config.chunk_size}, {self.config.action_dim})")
        self.fast_tokenizer = tokenizer
        self.fast_word_ids = add_fast_words(self.vlm, tokenizer)
        return self.fast_word_ids

    def fast_chunks(self, batch: dict):
        """The batch's action chunks as the FAST tokenizer reads them: relative (``delta_mask``), data units."""
        actions = torch.as_tensor(batch[ACTION_KEY], dtype=torch.float32)
        raw_state = torch.as_tensor(batch[STATE_KEY], dtype=torch.float32)
        return to_relative(actions, raw_state, self.config.delta_mask).cpu().numpy()

    def fast_targets(self, batch: dict) -> tuple[Tensor, Tensor]:
        """The FAST tokens of the batch's own action chunks, as vocabulary ids: ``(ids (B, M), pad (B, M))``,
        cut to ``max_fast_tokens``."""
        from .fast import fast_answer_ids

        ids, pad = fast_answer_ids(self.fast_tokenizer, self.fast_chunks(batch), self.fast_word_ids,
                                   self.vlm.tokenizer.pad_id)
        if self.config.max_fast_tokens and ids.shape[1] > self.config.max_fast_tokens:
            ids, pad = ids[:, : self.config.max_fast_tokens], pad[:, : self.config.max_fast_tokens]
        return ids, pad

    @property
    def experts(self) -> list[Expert]:
        return [self.vlm.backbone, self.action_expert]

    @property
    def answer_block(self) -> str | None:
        """The name of the backbone's answer block in this layout (``"fast"``, ``"subtask"``) or None."""
        return LAYOUTS[self.config.layout][0]

    def set_normalization_stats(self, stats: dict) -> None:
        """Statistics in LeRobot's ``dataset.meta.stats`` format (keys ``observation.state`` and ``action``).
        The action statistics are of the chunks *as the model predicts them* (relative where ``delta_mask``)."""
        self.state_normalizer.set_stats(stats[STATE_KEY])
        self.action_normalizer.set_stats(stats[ACTION_KEY])

    # ---- the prefix and the answer block -------------------------------------------------
    def state_words(self, state: Tensor) -> list[list[int]]:
        """The normalised state (B, D) as word ids, ``discrete_state_bins`` uniform bins per joint over [-1, 1]
        (quantile normalisation) or [-3, 3] standard deviations (mean/std)."""
        b = discretize(state, self.config.discrete_state_bins, self.config.normalization)
        return self._state_word_ids.to(b.device)[b].tolist()

    def embed_prefix(self, batch: dict, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """[image tokens, <bos> + instruction (+ the state as words)]: embeddings (B, Np, W), pad mask (B, Np).
        ``state`` is the normalised state (needed only with ``discrete_state_bins``)."""
        append = None
        if self.config.discrete_state_bins:
            if state is None:
                state = self.state_normalizer.normalize(torch.as_tensor(batch[STATE_KEY], dtype=torch.float32))
            append = self.state_words(state)
        return self.vlm.embed_prefix(batch, batch["task"], append_ids=append)

    def answer_tokens(self, batch: dict) -> tuple[Tensor, Tensor] | None:
        """The backbone's answer block of this batch, ``(ids (B, M), pad (B, M))`` ending in ``<eos>``, or None
        (no answer block in this layout, or none in the batch)."""
        if self.answer_block is None:
            return None
        ids = None
        if "answer_ids" in batch:
            ids = torch.as_tensor(batch["answer_ids"], dtype=torch.long)
            pad = torch.as_tensor(batch.get("answer_pad", torch.ones_like(ids, dtype=torch.bool)), dtype=torch.bool)
        elif self.answer_block == "fast" and self.fast_tokenizer is not None and ACTION_KEY in batch:
            ids, pad = self.fast_targets(batch)
        if ids is not None:
            eos = torch.full((ids.shape[0], 1), self.vlm.tokenizer.pad_id, dtype=torch.long)
            ids = torch.cat([ids, eos], 1)
            pad = torch.cat([pad, torch.zeros_like(pad[:, :1])], 1)
            lengths = pad.long().sum(1)
            ids[torch.arange(ids.shape[0]), lengths] = self.vlm.tokenizer.eos_id  # <eos> after the last real id
            pad[torch.arange(ids.shape[0]), lengths] = True
            dev = self.vlm.embed.weight.device
            return ids.to(dev), pad.to(dev)
        if "answer" in batch:
            return self.vlm.tokenize(list(batch["answer"]), add_bos=False, add_eos=True)
        return None

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

    def sequence(self, batch: dict, state: Tensor, answer: tuple[Tensor, Tensor] | None):
        """The backbone's tokens (prefix + answer block) with their pad mask, and the block layout of the whole
        sequence: ``(tokens (B, Nb, W), pad (B, Nb), prefix_pad (B, Np), layout)``."""
        prefix, prefix_pad = self.embed_prefix(batch, state)
        tokens, pad, n_answer = prefix, prefix_pad, 0
        if answer is not None:
            ids, ans_pad = answer
            tokens = torch.cat([prefix, self.vlm.embed_tokens(ids)], 1)
            pad, n_answer = torch.cat([prefix_pad, ans_pad], 1), ids.shape[1]
        layout = vla_layout(self.config.layout, prefix.shape[1], n_answer, self.config.chunk_size)
        return tokens, pad, prefix_pad, layout

    def joint(self, tokens: Tensor, pad: Tensor, layout, suffix: Tensor) -> tuple[Tensor, Tensor]:
        """Backbone tokens and suffix in one pass (training, and the uncached reference): the backbone's and the
        expert's final hidden states."""
        pad = torch.cat([pad, torch.ones(suffix.shape[:2], dtype=torch.bool, device=suffix.device)], 1)
        outs, _ = joint_forward(self.experts, [tokens, suffix], layout.mask(pad), positions_from_pad(pad),
                                knowledge_insulation=self.config.knowledge_insulation,
                                rope_base=self.vlm.config.rope_base)
        return outs[0], outs[1]

    # ---- training --------------------------------------------------------------------------
    def compute_loss(self, batch: dict, noise: Tensor | None = None, time: Tensor | None = None,
                     reduction: str = "mean") -> dict[str, Tensor]:
        """The losses of one batch: ``{"loss": weighted total, "flow", ["text" | "fast"], ["localization"]}``.

        ``reduction="mean"`` gives scalars; ``"none"`` gives each term per sample, shape (B,). The flow loss is
        the MSE of the velocity on the normalised (relative) chunk, padded steps (``action_is_pad``) left out.
        A batch with no ``"action"`` (VQA) gives only the backbone's text loss.
        """
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        cfg = self.config
        if ACTION_KEY not in batch:
            text = self.vlm.compute_loss(batch, reduction)
            return {"loss": cfg.text_weight * text, "text": text}
        if cfg.subtask_as_prompt and ("answer" in batch or "subtask" in batch):
            # pi0.5 in two sequences (models/subtask.py): the text loss of the high level + the low level's losses
            text = self.vlm.compute_loss(high_level_batch(batch), reduction)
            low = self.compute_loss(low_level_batch(batch), noise, time, reduction)
            return {**low, "loss": low["loss"] + cfg.text_weight * text, "text": text}
        actions = torch.as_tensor(batch[ACTION_KEY], dtype=torch.float32)
        if actions.ndim != 3 or actions.shape[1:] != (cfg.chunk_size, cfg.action_dim):
            raise ValueError(f"batch['action'] must be (B, {cfg.chunk_size}, {cfg.action_dim}), "
                             f"got {tuple(actions.shape)}")
        raw_state = torch.as_tensor(batch[STATE_KEY], dtype=torch.float32)
        state = self.state_normalizer.normalize(raw_state)
        actions = self.action_normalizer.normalize(to_relative(actions, raw_state, cfg.delta_mask))
        if noise is None:
            noise = torch.randn_like(actions)
        if time is None:
            time = sample_time(actions.shape[0], None, cfg.time_alpha, cfg.time_beta, cfg.time_scale,
                               cfg.time_offset, device=actions.device)
        x_t, u_t = interpolate(actions, noise, time), velocity_target(actions, noise)

        answer = self.answer_tokens(batch)
        tokens, pad, prefix_pad, layout = self.sequence(batch, state, answer)
        h_backbone, h_expert = self.joint(tokens, pad, layout, self.embed_suffix(state, x_t, time))
        err = (self.action_out_proj(h_expert[:, 1:]) - u_t).pow(2)  # (B, H, D)
        keep = None if "action_is_pad" not in batch else \
            (~torch.as_tensor(batch["action_is_pad"], dtype=torch.bool, device=err.device))[..., None]
        terms = {"flow": _masked_mean(err, keep, reduction)}
        if answer is not None:
            ids, ans_pad = answer
            logits = self.vlm.logits(shifted_answer_hidden(h_backbone, prefix_pad, ids.shape[1]))
            name = "fast" if self.answer_block == "fast" else "text"
            terms[name] = answer_cross_entropy(logits, ids.masked_fill(~ans_pad, -100), reduction)
        if cfg.localization_weight and "target_xy" in batch:
            terms["localization"] = self.localization_loss(batch, reduction)
        weights = {"flow": cfg.flow_weight, "text": cfg.text_weight, "fast": cfg.text_weight,
                   "localization": cfg.localization_weight}
        total = terms["flow"] if cfg.flow_weight == 1.0 else cfg.flow_weight * terms["flow"]
        for name, value in terms.items():
            if name != "flow":
                total = total + weights[name] * value
        return {"loss": total, **terms}

    def localization_loss(self, batch: dict, reduction: str = "mean") -> Tensor:
        """Squared pixel error (in [-1, 1] units) of instruction keypoint 0 of each camera against the named
        cube's position (``batch["target_xy"]``), over the labels that are valid. Call it after ``embed_prefix``."""
        pred = self.vlm.vision.instruction_xy[:, :, 0]  # (B, cameras, 2)
        valid = torch.as_tensor(batch["target_valid"], dtype=pred.dtype, device=pred.device)
        err = (pred - torch.as_tensor(batch["target_xy"], dtype=pred.dtype, device=pred.device)).pow(2).sum(-1)
        if reduction == "none":
            return (err * valid).sum(1) / valid.sum(1).clamp(min=1)
        return (err * valid).sum() / valid.sum().clamp(min=1)

    # ---- inference -------------------------------------------------------------------------
    @torch.inference_mode()
    def decode_subtask(self, batch: dict, max_new_tokens: int = 8) -> list[str]:
        """pi0.5's high level, pi(subtask | o, prompt): the backbone writes the next subtask in words, greedily,
        from the prefix (images, the high-level prompt ``batch["task"]``, the state as words), each word seeing
        the prefix and the words before it: the ``subtask`` layout's causal answer block, as it was trained.
        Put the text in ``batch["answer"]`` and :meth:`sample_actions` acts on it, pi(a | o, subtask)."""
        if self.answer_block != "subtask":
            raise ValueError(f"decode_subtask needs a model in the 'subtask' layout (pi0.5); this one is "
                             f"{self.config.layout!r}")
        append = None
        if self.config.discrete_state_bins:
            state = self.state_normalizer.normalize(torch.as_tensor(batch[STATE_KEY], dtype=torch.float32))
            append = self.state_words(state)
        return self.vlm.generate(batch, max_new_tokens=max_new_tokens, prompts=list(batch["task"]), append_ids=append)

    @torch.inference_mode()
    def sample_actions(self, batch: dict, num_steps: int | None = None, noise: Tensor | None = None,
                       use_cache: bool = True, guidance: float | None = None) -> Tensor:
        """Denoise one action chunk per row: (B, H, action_dim) **absolute** joint targets, in real units.

        With ``use_cache=True`` the backbone tokens (and the state token) run once and each Euler step runs
        only the H action tokens through the expert. ``use_cache=False`` reruns the whole sequence at each
        step; it is the slow reference the tests compare with. In the ``subtask`` layout the batch's
        ``"answer"`` (the decoded subtask) is part of what the actions see; in KI the FAST tokens never are.

        ``guidance=beta``: classifier-free guidance (RECAP's option). The batch then holds 2B rows, the first
        B conditioned (e.g. "... advantage: positive"), the last B the same frames without the condition;
        both halves start from the same ``noise`` (B, H, D) and every Euler step moves along
        ``v_u + beta * (v_c - v_u)``; the B guided chunks come back. ``beta = 1`` is the conditioned policy.
        """
        cfg = self.config
        num_steps = num_steps or cfg.num_inference_steps
        if cfg.subtask_as_prompt and "answer" in batch:
            batch = low_level_batch(batch)  # pi0.5's low level: the subtask is the instruction
        raw_state = torch.as_tensor(batch[STATE_KEY], dtype=torch.float32)
        state = self.state_normalizer.normalize(raw_state)
        bsz = state.shape[0]
        if guidance is not None and bsz % 2:
            raise ValueError(f"guidance needs 2B rows (B conditioned, then the same B unconditioned), got {bsz}")
        n_out = bsz // 2 if guidance is not None else bsz
        if noise is None:
            noise = torch.randn(n_out, cfg.chunk_size, cfg.action_dim, device=state.device)
        answer = self.answer_tokens(batch) if LAYOUTS[cfg.layout][1] else None
        tokens, bpad, _, layout = self.sequence(batch, state, answer)

        if not use_cache:
            def velocity(x_t, t):
                t = t.to(x_t.device)
                if guidance is not None:
                    v = self.action_out_proj(self.joint(tokens, bpad, layout, self.embed_suffix(
                        state, torch.cat([x_t, x_t]), torch.cat([t, t])))[1][:, 1:])
                    v_c, v_u = v.chunk(2)
                    return v_u + guidance * (v_c - v_u)
                return self.action_out_proj(self.joint(tokens, bpad, layout, self.embed_suffix(state, x_t, t))[1][:, 1:])
            x0 = euler_integrate(lambda x, t, _cond: velocity(x, t), noise, num_steps)
        else:
            n_b, h = tokens.shape[1], cfg.chunk_size
            pad = torch.cat([bpad, torch.ones(bsz, 1 + h, dtype=torch.bool, device=state.device)], 1)
            mask, pos = layout.mask(pad), positions_from_pad(pad)
            # 1) Once: the backbone tokens (backbone weights) and the state token (expert weights). Neither
            #    can see the actions, so their keys/values stay fixed while we denoise and go into the cache.
            #    (openpi recomputes the state token at each step; caching it too gives the same result.)
            _, cache = joint_forward(self.experts, [tokens, self.embed_state(state)], mask[:, : n_b + 1, : n_b + 1],
                                     pos[:, : n_b + 1], return_cache=True, rope_base=self.vlm.config.rope_base,
                                     pad_mask=pad[:, : n_b + 1])
            # 2) Each Euler step: only the H action tokens, through the expert, against the cache
            #    (sampler.py: the same maths as joint_forward, with what is constant hoisted out of the loop).
            x0 = CachedSampler(self, cache, mask[:, n_b + 1:], pos[:, n_b + 1:], num_steps)(noise, guidance)
        return to_absolute(self.action_normalizer.unnormalize(x0), raw_state[:n_out], cfg.delta_mask)

    # ---- checkpoints -------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` (VLM + pi0 settings + vocabulary) and ``model.safetensors`` (weights and
        normalisation statistics): everything the model needs to act."""
        save_checkpoint(self, path, {"kind": "Pi0", "vlm": asdict(self.vlm.config), "pi0": asdict(self.config),
                                     "tokenizer": self.vlm.tokenizer.to_dict()})
        if self.fast_tokenizer is not None:
            self.fast_tokenizer.save(Path(path) / FAST_FILE)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Pi0:
        cfg = read_config(path)
        vlm = TinyVLM(tokenizer_from_config(cfg, path), vlm_config_from_dict(cfg.get("vlm"), path))
        model = cls(vlm, pi0_config_from_dict(cfg.get("pi0"), path))
        if (Path(path) / FAST_FILE).is_file():  # its words are already in the saved vocabulary
            from .fast import FASTTokenizer

            model.set_fast_tokenizer(FASTTokenizer.load(Path(path) / FAST_FILE))
        load_weights(model, path)
        for name in ("state_normalizer", "action_normalizer"):
            if not bool(getattr(model, name).is_set):
                raise ValueError(f"{Path(path) / 'model.safetensors'} holds no {name.split('_')[0]} normalisation "
                                 "statistics; re-make the checkpoint (its recipe sets them from the data)")
        return model


def _masked_mean(err: Tensor, keep: Tensor | None, reduction: str) -> Tensor:
    """Mean of ``err`` (B, H, D) over the kept steps (``keep`` (B, H, 1), or all): a scalar or per sample (B,)."""
    if reduction == "none":
        if keep is None:
            return err.mean((1, 2))
        return (err * keep).sum((1, 2)) / (keep.sum((1, 2)) * err.shape[-1]).clamp(min=1)
    if keep is None:
        return err.mean()
    return (err * keep).sum() / (keep.sum() * err.shape[-1]).clamp(min=1)


def pi0_config_from_dict(d: dict, path=None) -> Pi0Config:
    """``Pi0Config`` from the ``"pi0"`` entry of a config.json. Relative actions must be stated
    (``"delta_mask"``: a list of booleans, or null for absolute actions): a model run with the wrong
    convention sends the arm to the wrong place, so a config without it is an error, not a default."""
    where = f"{Path(path) / 'config.json' if path else 'config'} 'pi0'"
    if not isinstance(d, dict):
        raise ValueError(f"{where} is missing; re-make the checkpoint")
    d = dict(d)
    if "action_loss_to_backbone" in d:  # the old, negated name of the stop-gradient switch
        d["knowledge_insulation"] = not d.pop("action_loss_to_backbone")
    if "delta_mask" not in d:
        raise ValueError(f"{where} does not say whether actions are relative: add \"delta_mask\" (e.g. "
                         "[true, true, true, true, true, false], as the recipe's metadata.json records, or null "
                         "for absolute actions), or re-make the checkpoint")
    return config_from_dict(Pi0Config, d, where)
