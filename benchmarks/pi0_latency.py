"""How long does pi0-in-miniature take to produce one action chunk on a CPU?

It prints the parameter counts, then the median wall-clock ms per action
chunk at batch 1: the prefix (2 cameras + instruction) run once and cached,
then 10 Euler steps of the action expert. Runs with torch.set_num_threads(1)
and (2). The target is <= 10 ms per chunk.

    python benchmarks/pi0_latency.py [--runs 50] [--chunk 16]

The model is untrained (random weights), which does not change the timing; its image tokens
(grid, keypoints and instruction keypoints) are the ``pi0_base`` recipe's.
On a shared machine timings are noisy: look at the median and the spread
(p10 is close to what an idle machine gives). At batch 1 the time goes on
the number of small ops, not on FLOPs: each op costs a few microseconds.
Two threads help only when the second core is really free; when another
process holds that core, they can be many times slower.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vla_course.constants import CAMERAS, IMAGE_SIZE, NUM_JOINTS
from vla_course.models import Pi0, Pi0Config, TinyVLM, VLMConfig, WordTokenizer, format_parameters
from vla_course.models.transformer import attention_bias, joint_forward
from vla_course.recipes.pi0 import Pi0BaseRecipe

R = Pi0BaseRecipe()  # the shipped pi0_base's image tokens


def build(chunk: int) -> tuple[Pi0, dict]:
    torch.manual_seed(0)
    tok = WordTokenizer()
    tok.add_texts(["pick up the red cube and put it in the blue bowl", "stack the green cube on the yellow cube"])
    vlm = TinyVLM(tok, VLMConfig())
    vlm.set_grid(R.grid)  # the shipped pi0_base's image tokens: grid cells + keypoints per camera
    if R.keypoints:
        vlm.add_keypoints(R.keypoints, R.keypoint_layer, R.keypoint_temp)
    if R.instruction_keypoints:
        vlm.add_instruction_keypoints(R.instruction_keypoints, R.keypoint_temp)
    model = Pi0(vlm, Pi0Config(chunk_size=chunk, delta_mask=R.delta_mask)).eval()
    zeros, ones = torch.zeros(NUM_JOINTS), torch.ones(NUM_JOINTS)
    model.set_normalization_stats({"observation.state": {"mean": zeros, "std": ones},
                                   "action": {"mean": zeros, "std": ones}})
    batch = {f"observation.images.{c}": torch.randint(0, 256, (1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8)
             for c in CAMERAS}
    batch["observation.state"] = torch.randn(1, NUM_JOINTS)
    batch["task"] = ["pick up the red cube and put it in the blue bowl"]
    return model, batch


def timeit(fn, runs: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10)
    return f"median {statistics.median(ms):6.2f} ms  (p10 {q[0]:.2f}, p90 {q[-1]:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    model, batch = build(args.chunk)
    print("pi0 in miniature: parameters")
    print(format_parameters(model))
    n_prefix = model.vlm.vision.tokens_per_camera * len(CAMERAS) + 1 + len(model.vlm.tokenizer.encode(batch["task"][0]))
    print(f"tokens: prefix {n_prefix} (cached), suffix {1 + args.chunk} (state + H={args.chunk} actions)")

    def prefix_only():
        with torch.inference_mode():
            prefix, pad = model.vlm.embed_prefix(batch, batch["task"])
            joint_forward(model.experts, [prefix, None], attention_bias(pad[:, None, :] & pad[:, :, None]),
                          torch.arange(pad.shape[1])[None], return_cache=True)

    for threads in (1, 2):
        torch.set_num_threads(threads)
        chunk_ms = timeit(lambda: model.sample_actions(batch, num_steps=args.steps), args.runs)
        pre_ms = timeit(prefix_only, args.runs)
        nocache_ms = timeit(lambda: model.sample_actions(batch, num_steps=args.steps, use_cache=False),
                            max(10, args.runs // 5))
        print(f"\n[threads={threads}]")
        print(f"  action chunk, {args.steps} Euler steps, prefix cached: {summary(chunk_ms)}")
        print(f"    of which the prefix (vision + text + backbone, once):  {summary(pre_ms)}")
        print(f"  same chunk without the KV cache (reference):           {summary(nocache_ms)}")
        verdict = "meets" if statistics.median(chunk_ms) <= 10.0 else "MISSES"
        print(f"  -> {verdict} the <= 10 ms per chunk target")


if __name__ == "__main__":
    main()
