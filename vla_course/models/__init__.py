"""The course's models, in miniature: a tiny VLM (PaliGemma-like) and pi0 built on it.

    tokenizer.py    WordTokenizer: word-level, growable vocabulary
    vision.py       ConvTokenizer: 96x96 camera frames -> 16 grid tokens each (+ optional spatial-softmax keypoint
                    tokens, and instruction keypoints whose maps are made from the instruction)
    masks.py        ar_mask / block-layout attention masks, ascii_mask()
    transformer.py  multi-expert transformer: one attention, several weight sets, KV cache, KI stop-gradient
    vlm.py          TinyVLM: prefix-LM over [image tokens, prompt | answer], greedy generate()
    flow.py         flow matching (t=1 noise, t=0 data), Beta time sampler, Euler integration
    normalize.py    Normalizer: dataset statistics kept as buffers in the checkpoint
    pi0.py          Pi0: TinyVLM backbone + action expert, flow-matching loss, cached sampling
    sampler.py      CachedSampler: the Euler steps against the prefix cache, constants hoisted out of the loop
    policy.py       Pi0Policy: act(frame) for the control loop, with an action-chunk queue
    summary.py      count_parameters()
    synthetic.py    tiny configs and random batches (tests, smoke checks)
"""

from .flow import euler_integrate, interpolate, sample_time, sincos_time_embedding
from .masks import Block, BlockLayout, ascii_mask, block_mask, ki_layout, make_att_2d_masks, pi0_layout, prefix_lm_layout
from .normalize import Normalizer
from .pi0 import Pi0, Pi0Config
from .policy import Pi0Policy
from .summary import count_parameters, format_parameters
from .tokenizer import WordTokenizer, split_words
from .transformer import Expert, ExpertConfig, KVCache, RMSNorm, joint_forward
from .vision import ConvTokenizer, to_float_chw
from .vlm import TinyVLM, VLMConfig

__all__ = [
    "Block", "BlockLayout", "ConvTokenizer", "Expert", "ExpertConfig", "KVCache", "Normalizer", "Pi0",
    "Pi0Config", "Pi0Policy", "RMSNorm", "TinyVLM", "VLMConfig", "WordTokenizer", "ascii_mask", "block_mask",
    "count_parameters", "euler_integrate", "format_parameters", "interpolate", "joint_forward", "ki_layout",
    "make_att_2d_masks", "pi0_layout", "prefix_lm_layout", "sample_time", "sincos_time_embedding",
    "split_words", "to_float_chw",
]
