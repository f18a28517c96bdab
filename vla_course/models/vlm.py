r"""TinyVLM: a PaliGemma in miniature (image encoder + word embeddings + decoder-only transformer).

PaliGemma reads ``[image tokens, question]`` as one bidirectional prefix and
writes the answer causally: a **prefix-LM**. The image tokens and the question
see each other both ways. Each answer word sees the prefix and the words
before it::

    tokens:   img ... img  <bos> what colour ? | red  <eos>
    ar_mask:   0  ...  0     0    0      0   0 |  1     1
    loss:                                    ^ predicts "red" ("red" predicts <eos>)

The loss is cross-entropy on the answer only. Decoding is greedy: run the
prefix once (KV cache), then feed one word at a time.

This module owns the **backbone** weights (``self.backbone``, an
:class:`~vla_course.models.transformer.Expert`). pi0 reuses them and adds a
second expert next to them (see ``pi0.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..constants import CAMERAS, IMAGE_KEY_PREFIX, IMAGE_SIZE
from .masks import make_att_2d_masks
from .serialization import config_from_dict, load_weights, read_config, save_checkpoint
from .tokenizer import WordTokenizer
from .transformer import Expert, ExpertConfig, KVCache, joint_forward, positions_from_pad, rope_cos_sin
from .vision import ImageEncoder


@dataclass
class VLMConfig:
    """Sizes of the tiny VLM.

    The defaults give ~0.40M parameters: vision 65k, backbone 332k, plus 96 per
    vocabulary word (the embedding, tied with the LM head).
    """

    width: int = 96
    depth: int = 3
    num_heads: int = 4
    head_dim: int = 24
    mlp_dim: int = 256
    image_size: int = IMAGE_SIZE
    cameras: tuple[str, ...] = CAMERAS
    grid: int = 4  # tokens per side per camera -> 16 tokens per camera
    vision_channels: tuple[int, int] = (32, 64)
    keypoints: int = 0  # spatial-softmax keypoint tokens per camera (pi0 adds them; see vision.py)
    keypoint_layer: int = 2
    instruction_keypoints: int = 0  # instruction keypoint tokens per camera (see vision.py)
    max_prompt_len: int = 24  # prompt words (after <bos>) kept; longer prompts are cut
    rope_base: float = 10_000.0

    def backbone(self) -> ExpertConfig:
        return ExpertConfig(self.width, self.mlp_dim, self.depth, self.num_heads, self.head_dim)


def camera_images(batch: dict, cameras: tuple[str, ...]) -> list[Tensor]:
    """Pick each camera's frames from a batch. The key is ``observation.images.<cam>`` (LeRobot) or ``<cam>``."""
    out = []
    for cam in cameras:
        key = IMAGE_KEY_PREFIX + cam
        if key in batch:
            out.append(batch[key])
        elif cam in batch:
            out.append(batch[cam])
        else:
            raise KeyError(f"batch has no image for camera {cam!r} (expected key {key!r})")
    return out


class TinyVLM(nn.Module):
    """Vision encoder + word embeddings + backbone transformer + tied LM head.

    Args:
        tokenizer: a :class:`WordTokenizer`; the embedding has one row per word.
        config: :class:`VLMConfig`.

    Batch format (LeRobot keys): ``"observation.images.front"`` /
    ``"observation.images.wrist"`` are ``uint8 (B, 96, 96, 3)`` or ``float (B, 3, 96, 96)``,
    ``"prompt"`` is ``list[str]``, and for training ``"answer"`` is ``list[str]``.
    """

    def __init__(self, tokenizer: WordTokenizer, config: VLMConfig | None = None):
        super().__init__()
        self.config = config = config or VLMConfig()
        self.tokenizer = tokenizer
        self.vision = ImageEncoder(config.width, len(config.cameras), config.image_size, config.grid,
                                   tuple(config.vision_channels), config.keypoints, config.keypoint_layer,
                                   config.instruction_keypoints)
        self.embed = nn.Embedding(len(tokenizer), config.width)
        nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(config.width))
        self.backbone = Expert(config.backbone())

    def set_grid(self, grid: int) -> None:
        """Image tokens per side per camera (see ``ImageEncoder.set_grid``); the config follows."""
        self.vision.set_grid(grid)
        self.config = replace(self.config, grid=grid)

    def add_keypoints(self, keypoints: int, layer: int = 2, temperature: float = 1.0) -> None:
        """Add spatial-softmax keypoint tokens to every camera (see ``ImageEncoder.add_keypoints``)."""
        self.vision.add_keypoints(keypoints, layer, temperature)
        self.config = replace(self.config, keypoints=keypoints, keypoint_layer=layer)

    def add_instruction_keypoints(self, keypoints: int, temperature: float = 1.0) -> None:
        """Add instruction keypoint tokens to every camera (see ``ImageEncoder.add_instruction_keypoints``)."""
        self.vision.add_instruction_keypoints(keypoints, temperature)
        self.config = replace(self.config, instruction_keypoints=keypoints)

    # ---- vocabulary growth ------------------------------------------------------------
    def resize_token_embeddings(self) -> None:
        """Give the embedding (and the tied LM head) one row per tokenizer word.

        Call it after ``tokenizer.add_words``. Old rows are kept and new rows are
        initialised at random.
        """
        old, n = self.embed.weight.data, len(self.tokenizer)
        if n < old.shape[0]:
            raise ValueError("the tokenizer shrank; ids must never be removed")
        if n == old.shape[0]:
            return
        new = nn.Embedding(n, old.shape[1]).to(old.device)
        nn.init.normal_(new.weight, std=1.0 / math.sqrt(old.shape[1]))
        new.weight.data[: old.shape[0]] = old
        self.embed = new

    # ---- embeddings --------------------------------------------------------------------
    def tokenize(self, texts: list[str], add_bos: bool, add_eos: bool, max_len: int | None = None,
                 append_ids: list[list[int]] | None = None) -> tuple[Tensor, Tensor]:
        """Right-padded ids (B, L) and pad mask (B, L), with L = longest text in the batch.

        ``max_len`` cuts each text's words; ``append_ids`` (one list per row, e.g. a discretised state)
        follow the kept words, uncut."""
        if len(self.tokenizer) != self.embed.num_embeddings:
            raise RuntimeError(f"tokenizer has {len(self.tokenizer)} words but the embedding has "
                               f"{self.embed.num_embeddings} rows; call resize_token_embeddings()")
        seqs = []
        for t in texts:
            ids = self.tokenizer.encode(t)
            if max_len is not None:
                ids = ids[:max_len]
            if append_ids is not None:
                ids = ids + list(append_ids[len(seqs)])
            seqs.append(([self.tokenizer.bos_id] if add_bos else []) + ids + ([self.tokenizer.eos_id] if add_eos else []))
        length = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), length), self.tokenizer.pad_id, dtype=torch.long)
        pad = torch.zeros(len(seqs), length, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            pad[i, : len(s)] = True
        dev = self.embed.weight.device
        return ids.to(dev), pad.to(dev)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Word embeddings, scaled by sqrt(width) as in Gemma."""
        return self.embed(ids) * math.sqrt(self.config.width)

    def embed_prefix(self, batch: dict, prompts: list[str] | None = None,
                     append_ids: list[list[int]] | None = None) -> tuple[Tensor, Tensor]:
        """Prefix = [image tokens of every camera, <bos> + prompt words (+ ``append_ids``)].

        With instruction keypoints, their query is the mean word embedding of ``batch["instruction"]`` if the
        batch has one (the instruction without a condition after it), else of the prompt.

        It returns embeddings (B, Np, W) and the pad mask (B, Np). The whole
        prefix is one bidirectional block (ar_mask all zeros).
        """
        if prompts is None:
            prompts = batch["prompt"] if "prompt" in batch else batch["task"]
        if isinstance(prompts, str):
            prompts = [prompts]
        ids, text_pad = self.tokenize(list(prompts), add_bos=True, add_eos=False,
                                      max_len=self.config.max_prompt_len, append_ids=append_ids)
        text = self.embed_tokens(ids)
        query = None
        if self.config.instruction_keypoints:  # RECAP's "advantage: ..." after the instruction must not dilute it
            query = (self.instruction_query(batch["instruction"]) if "instruction" in batch
                     else mean_embedding(text, text_pad))
        images = camera_images(batch, self.config.cameras)
        if len(images[0]) != ids.shape[0]:
            raise ValueError(f"{len(images[0])} images but {ids.shape[0]} prompts")
        img = self.vision(images, query=query)
        img_pad = torch.ones(img.shape[:2], dtype=torch.bool, device=img.device)
        return torch.cat([img, text], 1), torch.cat([img_pad, text_pad], 1)

    def instruction_query(self, prompts: list[str]) -> Tensor:
        """(B, width): the mean word embedding of ``<bos> + prompt``, what instruction keypoints look for."""
        ids, pad = self.tokenize(list(prompts), add_bos=True, add_eos=False, max_len=self.config.max_prompt_len)
        return mean_embedding(self.embed_tokens(ids), pad)

    def logits(self, hidden: Tensor) -> Tensor:
        """LM head tied to the input embedding (Gemma ties them)."""
        return hidden @ self.embed.weight.T

    # ---- training ----------------------------------------------------------------------
    def answer_logits(self, batch: dict) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits for every answer word (and <eos>).

        It returns ``(logits (B, M, V), targets (B, M))``. Targets are -100 at
        padding. The logit for answer word j comes from the token before it:
        the last real prefix token for j=0, answer word j-1 otherwise.
        """
        prefix, prefix_pad = self.embed_prefix(batch)
        ans_ids, ans_pad = self.tokenize(list(batch["answer"]), add_bos=False, add_eos=True)
        x = torch.cat([prefix, self.embed_tokens(ans_ids)], 1)
        pad = torch.cat([prefix_pad, ans_pad], 1)
        ar = torch.cat([torch.zeros(prefix.shape[1], dtype=torch.long),
                        torch.ones(ans_ids.shape[1], dtype=torch.long)]).to(x.device)
        mask = make_att_2d_masks(pad, ar)
        (h,), _ = joint_forward([self.backbone], [x], mask, positions_from_pad(pad),
                                rope_base=self.config.rope_base)
        return self.logits(shifted_answer_hidden(h, prefix_pad, ans_ids.shape[1])), \
            ans_ids.masked_fill(~ans_pad, -100)

    def compute_loss(self, batch: dict, reduction: str = "mean") -> Tensor:
        """Cross-entropy on the answer words (and <eos>) only: a scalar, or (B,) per row with
        ``reduction="none"`` (each row's mean over its own answer words)."""
        logits, targets = self.answer_logits(batch)
        return answer_cross_entropy(logits, targets, reduction)

    # ---- inference ---------------------------------------------------------------------
    def prefill(self, batch: dict, prompts: list[str] | None = None,
                append_ids: list[list[int]] | None = None) -> tuple[Tensor, KVCache]:
        """Run the prefix once through the backbone (``append_ids``: words after the prompt, e.g. the state).

        It returns the final hidden state of each row's last real prefix token
        (B, W) and the KV cache (which holds the prefix's pad mask).
        """
        prefix, pad = self.embed_prefix(batch, prompts, append_ids=append_ids)
        mask = make_att_2d_masks(pad, torch.zeros(pad.shape[1], dtype=torch.long, device=pad.device))
        (h,), cache = joint_forward([self.backbone], [prefix], mask, positions_from_pad(pad),
                                    return_cache=True, rope_base=self.config.rope_base, pad_mask=pad)
        last = pad.long().sum(1) - 1
        return h[torch.arange(h.shape[0]), last], cache

    @torch.inference_mode()
    def generate(self, batch: dict, max_new_tokens: int = 8, allowed_ids=None, return_cache: bool = False,
                 prompts: list[str] | str | None = None, return_ids: bool = False, return_logits: bool = False,
                 append_ids: list[list[int]] | None = None):
        """Greedy decoding with a KV cache: the course's one decoder (VQA answers, action words, subtasks).

        ``batch`` holds the camera images (and ``"prompt"`` unless ``prompts`` is given). It runs the prefix
        once (:meth:`prefill`), then one word per forward pass, each seeing every real cached token and
        itself. A row stops at ``<eos>``; ``allowed_ids`` restricts every step to those ids (RT-2 restricts
        decoding to its action words; without ``<eos>`` among them, exactly ``max_new_tokens`` are written).

        Returns the answer strings (one per row); with ``return_ids`` / ``return_logits`` / ``return_cache``
        a tuple ``(texts, [ids (B, T)], [logits (B, T, V)], [cache])`` of what was asked, in that order. The
        cache holds the prefix and every generated word but the last (whose keys were never computed).
        ``append_ids`` go after each prompt (pi0.5's state as words, :meth:`Pi0.decode_subtask`).
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        h_last, cache = self.prefill(batch, prompts, append_ids)
        bsz, dev = h_last.shape[0], h_last.device
        bias = torch.zeros(self.embed.num_embeddings, device=dev)
        if allowed_ids is not None:
            bias.fill_(float("-inf"))
            bias[torch.as_tensor(list(allowed_ids), dtype=torch.long, device=dev)] = 0.0
        eos = self.tokenizer.eos_id
        step_logits = [self.logits(h_last) + bias]
        out = [step_logits[-1].argmax(-1)]
        done = out[-1] == eos
        hd = self.config.head_dim
        for _ in range(max_new_tokens - 1):
            if bool(done.all()):
                break
            x = self.embed_tokens(out[-1])[:, None]  # (B, 1, W)
            key_pad = torch.cat([cache.pad_mask, torch.ones(bsz, 1, dtype=torch.bool, device=dev)], 1)
            (h,), cache = joint_forward([self.backbone], [x], key_pad[:, None, :], kv_cache=cache,
                                        return_cache=True, rope=rope_cos_sin(cache.next_pos[:, None], hd,
                                                                             self.config.rope_base))
            step_logits.append(self.logits(h[:, 0]) + bias)
            nxt = torch.where(done, torch.full_like(out[-1], eos), step_logits[-1].argmax(-1))
            out.append(nxt)
            done = done | (nxt == eos)
        ids = torch.stack(out, 1)
        texts = [self.tokenizer.decode(row.tolist()) for row in ids]
        extra = ([ids] if return_ids else []) + ([torch.stack(step_logits, 1)] if return_logits else []) \
            + ([cache] if return_cache else [])
        return (texts, *extra) if extra else texts

    # ---- checkpoints -------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` (sizes and vocabulary) and ``model.safetensors``."""
        save_checkpoint(self, path, {"kind": "TinyVLM", "vlm": asdict(self.config),
                                     "tokenizer": self.tokenizer.to_dict()})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> TinyVLM:
        cfg = read_config(path)
        model = cls(tokenizer_from_config(cfg, path), vlm_config_from_dict(cfg.get("vlm"), path))
        load_weights(model, path)
        return model


def shifted_answer_hidden(h: Tensor, prefix_pad: Tensor, answer_len: int) -> Tensor:
    """The hidden states that predict each answer token, (B, answer_len, W), from a sequence ``h`` laid out as
    ``[prefix (Np, right-padded) | answer (answer_len) | ...]``: the last real prefix token predicts answer
    token 0, answer token j-1 predicts token j (teacher forcing)."""
    n_p = prefix_pad.shape[1]
    last = prefix_pad.long().sum(1) - 1  # index of the last real prefix token
    first = h[torch.arange(h.shape[0]), last][:, None]
    return torch.cat([first, h[:, n_p: n_p + answer_len - 1]], 1)


def answer_cross_entropy(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy over the real answer tokens (targets -100 are padding): the mean over every token of the
    batch, or with ``reduction="none"`` one value per row (its own tokens' mean)."""
    if reduction == "mean":
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    if reduction != "none":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
    keep = (targets != -100).to(per_token.dtype)
    return (per_token * keep).sum(1) / keep.sum(1).clamp(min=1)


def mean_embedding(emb: Tensor, pad: Tensor) -> Tensor:
    """Mean over the real (unpadded) tokens: (B, N, W), (B, N) -> (B, W)."""
    keep = pad[..., None].to(emb.dtype)
    return (emb * keep).sum(1) / keep.sum(1).clamp(min=1)


def vlm_config_from_dict(d: dict, path=None) -> VLMConfig:
    """``VLMConfig`` from the ``"vlm"`` entry of a config.json (checked: see ``serialization.config_from_dict``)."""
    return config_from_dict(VLMConfig, d, f"{Path(path) / 'config.json' if path else 'config'} 'vlm'")


def tokenizer_from_config(cfg: dict, path=None) -> WordTokenizer:
    try:
        return WordTokenizer.from_dict(cfg["tokenizer"])
    except (KeyError, TypeError, ValueError) as e:
        where = Path(path) / "config.json" if path else "config"
        raise ValueError(f"{where} has no valid 'tokenizer' vocabulary ({e}); re-make the checkpoint") from e
