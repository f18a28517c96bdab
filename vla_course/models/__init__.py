"""The course's models, in miniature: a tiny VLM (PaliGemma-like) and pi0 built on it.

    tokenizer.py      WordTokenizer: word-level, growable vocabulary
    vision.py         ImageEncoder: 96x96 camera frames -> 16 grid tokens each (+ optional spatial-softmax
                      keypoint tokens, and instruction keypoints whose maps are made from the instruction)
    masks.py          blocks and block layouts (pi0, knowledge insulation, subtask), ar_mask, ascii_mask()
    transformer.py    multi-expert transformer: one attention, several weight sets, KV cache, KI stop-gradient
    vlm.py            TinyVLM: prefix-LM over [image tokens, prompt | answer], the one greedy decoder generate()
    normalize.py      Normalizer: dataset statistics kept as buffers in the checkpoint
    relative.py       relative actions (openpi's DeltaActions): to_relative / to_absolute
    pi0.py            Pi0: the VLA core: blocks (prefix, answer, state, actions), a dict of losses, sampling
    sampler.py        CachedSampler: the Euler steps against the prefix cache, constants hoisted out of the loop
    policy.py         Pi0Policy: act(frame) for the control loop, with an action-chunk queue
    serialization.py  config.json + model.safetensors, read strictly
    summary.py        count_parameters()
    synthetic.py      tiny configs and random batches (tests, smoke checks)

Flow matching itself (time sampling, the straight path, Euler) lives in ``vla_course.heads.flow`` and the
time embedding in ``vla_course.heads.nets``: chapters 02-03 and pi0 share one home for each.
"""

from ..heads.flow import euler_integrate, interpolate, sample_time, velocity_target
from ..heads.nets import sincos_time_embedding
from .masks import (LAYOUTS, Block, BlockLayout, ascii_mask, block_mask, ki_layout, make_att_2d_masks, pi0_layout,
                    prefix_lm_layout, subtask_layout, vla_layout)
from .normalize import Normalizer
from .pi0 import Pi0, Pi0Config
from .policy import Pi0Policy
from .relative import to_absolute, to_relative
from .summary import count_parameters, format_parameters
from .tokenizer import WordTokenizer, split_words
from .transformer import Expert, ExpertConfig, KVCache, RMSNorm, joint_forward, positions_from_pad
from .vision import ImageEncoder, to_float_chw
from .vlm import TinyVLM, VLMConfig

__all__ = [
    "LAYOUTS", "Block", "BlockLayout", "Expert", "ExpertConfig", "ImageEncoder", "KVCache", "Normalizer", "Pi0",
    "Pi0Config", "Pi0Policy", "RMSNorm", "TinyVLM", "VLMConfig", "WordTokenizer", "ascii_mask", "block_mask",
    "count_parameters", "euler_integrate", "format_parameters", "interpolate", "joint_forward", "ki_layout",
    "make_att_2d_masks", "pi0_layout", "positions_from_pad", "prefix_lm_layout", "sample_time",
    "sincos_time_embedding", "split_words", "subtask_layout", "to_absolute", "to_float_chw", "to_relative",
    "velocity_target", "vla_layout",
]
