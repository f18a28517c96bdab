"""FAST action tokens on SO-100 expert chunks: tokens per chunk against reconstruction error, naive binning as
the baseline, the control rate, relaxed decoding, and the cost of decoding a chunk token by token.

Data: the scripted expert's episodes in the sim (the actions a recording stores; no rendering, so seconds).
Every tokenizer is fitted on the chunks of the TRAIN episodes (every 16-step window) and measured on the
non-overlapping chunks of HELD-OUT episodes (other seeds). Errors are in the data's units: degrees for the
five arm joints, 0..100 for the gripper.

    .venv/bin/python benchmarks/fast_tokens.py                   # the tables and the targets
    .venv/bin/python benchmarks/fast_tokens.py --json outputs/fast_tokens.json
    .venv/bin/python benchmarks/fast_tokens.py --fit data/tokenizers/fast_so100.json   # (re)make the shipped file

Targets: at the default scale 10, >= 3x fewer tokens per chunk than naive 256-bin binning (H x 6 words);
FAST's token count at the scale where its RMSE matches naive binning's; decoding never raises. Notebook 05
measures the same on the same episodes and prints the same numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vla_course.constants import FPS
from vla_course.models.action_text import ActionTextTokenizer, expert_action_chunks
from vla_course.models.fast import (DEFAULT_SCALE, DEFAULT_VOCAB_SIZE, FASTTokenizer, add_fast_words, alphabet_size,
                                    fast_tokens_from_ids, quantiles, resample_actions, sliding_chunks)

H = 16  # Pi0Config().chunk_size: 0.53 s at 30 Hz
TRAIN_SEEDS = tuple(range(0, 40))
HELDOUT_SEEDS = tuple(range(1000, 1020))
SCALES = (1, 2, 5, 10, 20, 50, 100, 200)
MATCH_GRID = tuple(2 ** (k / 4) for k in range(0, 41))  # 1 .. 1024, four per octave
RATES = (1, 2, 4)
VOCABS = (256, 512, 1024)
SHIPPED = Path(__file__).resolve().parents[1] / "data" / "tokenizers" / "fast_so100.json"
COMMAND = "python benchmarks/fast_tokens.py --fit data/tokenizers/fast_so100.json"


def expert_episodes(seeds) -> list[np.ndarray]:
    """One (T, 6) array of absolute joint targets per episode seed."""
    return [expert_action_chunks(1, chunk_size=1, seed=s)[:, 0] for s in seeds]


def episode_chunks(episodes, horizon: int = H, stride: int | None = None, factor: int = 1) -> np.ndarray:
    """Chunks of every episode at ``factor`` x the control rate (``stride`` None: non-overlapping)."""
    eps = [resample_actions(e, factor) if factor > 1 else e for e in episodes]
    return np.concatenate([sliding_chunks(e, horizon, stride or horizon) for e in eps])


def vocab_for(scale: float, horizon: int = H) -> int:
    """The paper's 1024, or the alphabet + 512 merges where the alphabet alone would leave fewer."""
    return max(DEFAULT_VOCAB_SIZE, alphabet_size(scale, horizon) + 512)


def errors(rec, true) -> dict:
    e = np.asarray(rec, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return {"rmse_arm_deg": float(np.sqrt((e[..., :5] ** 2).mean())), "max_arm_deg": float(np.abs(e[..., :5]).max()),
            "rmse_gripper": float(np.sqrt((e[..., 5] ** 2).mean()))}


def measure(tok, held, seconds: float) -> dict:
    """Tokens per chunk (mean, max), per second, and the reconstruction error of ``tok`` on ``held``."""
    tokens = [tok.encode(c) for c in held]
    failures = tok.decode_failures
    rec = np.stack([tok.decode(t, horizon=held.shape[1]) for t in tokens])
    n = np.array([len(t) for t in tokens])
    return {"tokens_mean": float(n.mean()), "tokens_max": int(n.max()), "tokens_per_s": float(n.mean() / seconds),
            "decode_failures": tok.decode_failures - failures, **errors(rec, held)}


def naive_row(train, held, seconds: float) -> dict:
    naive = ActionTextTokenizer.fit(train, num_bins=256)
    n = naive.tokens_per_chunk(held.shape[1])
    return {"tokens_mean": float(n), "tokens_max": int(n), "tokens_per_s": n / seconds,
            **errors(naive.roundtrip(held), held), "low": naive.low.tolist(), "high": naive.high.tolist()}


def symbols_rmse(train, held, scale: float) -> float:
    """Arm RMSE at a scale without fitting BPE (it is lossless, so the error does not depend on it)."""
    low, high = quantiles(train)
    at = FASTTokenizer(low, high, scale, None, held.shape[1], held.shape[2])
    return errors(at.from_symbols(at.symbols(held)), held)["rmse_arm_deg"]


def matching_scale(train, held, target: float) -> dict:
    """The smallest scale of MATCH_GRID whose arm RMSE on ``held`` is at most ``target``, and its tokens."""
    for s in MATCH_GRID:
        if symbols_rmse(train, held, s) <= target:
            tok = FASTTokenizer.fit(train, scale=s, vocab_size=vocab_for(s, train.shape[1]))
            return {"scale": s, "vocab_size": tok.vocab_size, **measure(tok, held, H / FPS)}  # every chunk: 0.53 s
    return {"scale": None}


def relaxed_decoding(tok, held, seed: int = 0) -> dict:
    """Decode every truncation, an over-long copy and random garbage of each held-out chunk's tokens."""
    rng = np.random.default_rng(seed)
    calls = raised = wrong_shape = 0
    before = tok.decode_failures
    for c in held:
        t = tok.encode(c)
        cases = [t[:k] for k in range(len(t))] + [t + t, t + [-1], list(rng.integers(-10, 2 * tok.vocab_size, 20)),
                                                    list(rng.permutation(t)), [None, "x", 3.5]]
        for case in cases:
            calls += 1
            try:
                out = tok.decode(case)
                wrong_shape += out.shape != (tok.horizon, tok.action_dim) or not np.isfinite(out).all()
            except Exception:  # noqa: BLE001 (this is what we count)
                raised += 1
    return {"calls": calls, "raised": raised, "wrong_shape": int(wrong_shape),
            "repaired_and_counted": tok.decode_failures - before}


def latency(tok, n_tokens: int, runs: int = 20, seed: int = HELDOUT_SEEDS[0]) -> dict:
    """ms per chunk, one thread: pi0_base's backbone writing ``n_tokens`` FAST words greedily (its FAST rows are
    new, untrained) against pi0_base's flow expert (10 Euler steps). Speed does not depend on the weights."""
    from vla_course.checkpoints import load_pretrained
    from vla_course.sim import make_env

    torch.manual_seed(0)
    pi0 = load_pretrained("pi0_base", kind="Pi0").eval()
    env = make_env("pick_place", seed=seed)
    try:
        obs, _ = env.reset(seed=seed)
    finally:
        env.close()
    batch = {k: (torch.as_tensor(np.asarray(v))[None] if k != "task" else [v]) for k, v in obs.items()}
    vlm = copy.deepcopy(pi0.vlm)
    fast_ids = add_fast_words(vlm, tok)

    def fast():
        return vlm.generate(batch, n_tokens, allowed_ids=fast_ids, prompts=batch["task"], return_ids=True)[1]

    def timed(fn):
        for _ in range(3):
            fn()
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(out)

    ms_fast, ms_flow = timed(fast), timed(lambda: pi0.sample_actions(batch))
    failures = tok.decode_failures
    chunk = tok.decode(fast_tokens_from_ids(fast()[0], fast_ids, vlm.tokenizer.eos_id))
    return {"fast_tokens": n_tokens, "ms_fast_autoregressive": ms_fast, "ms_flow_10_steps": ms_flow,
            "ratio": ms_fast / ms_flow, "untrained_decode_shape": list(chunk.shape),
            "untrained_decode_repaired": tok.decode_failures - failures}


def run(with_latency: bool = True) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    train_eps, held_eps = expert_episodes(TRAIN_SEEDS), expert_episodes(HELDOUT_SEEDS)
    train, held = episode_chunks(train_eps, stride=1), episode_chunks(held_eps)
    seconds = H / FPS
    out = {"data": {"train_seeds": [TRAIN_SEEDS[0], TRAIN_SEEDS[-1]], "heldout_seeds": [HELDOUT_SEEDS[0],
                    HELDOUT_SEEDS[-1]], "train_chunks": len(train), "heldout_chunks": len(held), "horizon": H,
                    "fps": FPS, "collect_s": time.perf_counter() - t0}}
    out["naive"] = naive = naive_row(train, held, seconds)
    out["scales"] = {}
    for s in SCALES:
        tok = FASTTokenizer.fit(train, scale=s, vocab_size=vocab_for(s))
        out["scales"][s] = {"vocab_size": tok.vocab_size, **measure(tok, held, seconds),
                            "clipped_values": tok.encode_clipped}
    lo, hi = np.asarray(naive["low"]), np.asarray(naive["high"])
    inside = ((held >= lo) & (held <= hi)).all((1, 2))
    out["match_all"] = {"naive_rmse_arm_deg": naive["rmse_arm_deg"],
                        **matching_scale(train, held, naive["rmse_arm_deg"])}
    naive_in = errors(ActionTextTokenizer(lo, hi, 256).roundtrip(held[inside]), held[inside])
    out["match_in_range"] = {"chunks": int(inside.sum()), "naive_rmse_arm_deg": naive_in["rmse_arm_deg"],
                             "naive_max_arm_deg": naive_in["max_arm_deg"],
                             **matching_scale(train, held[inside], naive_in["rmse_arm_deg"])}
    out["rates"] = {}
    for f in RATES:
        tr, he = episode_chunks(train_eps, H * f, stride=f, factor=f), episode_chunks(held_eps, H * f, factor=f)
        tok = FASTTokenizer.fit(tr, scale=DEFAULT_SCALE, vocab_size=DEFAULT_VOCAB_SIZE)
        out["rates"][f] = {"hz": FPS * f, "horizon": H * f, "naive_tokens": H * f * 6, **measure(tok, he, seconds)}
        same = matching_scale(tr, he, out["rates"][1]["rmse_arm_deg"])  # the error of 30 Hz at scale 10
        out["rates"][f]["same_error"] = {k: same[k] for k in ("scale", "tokens_mean", "tokens_per_s", "rmse_arm_deg")}
    out["vocabs"] = {}
    for v in VOCABS:
        tok = FASTTokenizer.fit(train, scale=DEFAULT_SCALE, vocab_size=v)
        out["vocabs"][v] = measure(tok, held, seconds)
    default = FASTTokenizer.fit(train, scale=DEFAULT_SCALE, vocab_size=DEFAULT_VOCAB_SIZE)
    out["relaxed"] = relaxed_decoding(default, held)
    if with_latency:
        out["latency"] = latency(default, int(np.ceil(out["scales"][DEFAULT_SCALE]["tokens_mean"])))
    out["seconds"] = time.perf_counter() - t0
    return out


def report(r: dict) -> None:
    d, naive = r["data"], r["naive"]
    print(f"fit on {d['train_chunks']} chunks (every {d['horizon']}-step window) of expert episodes "
          f"{d['train_seeds'][0]}..{d['train_seeds'][1]}; measured on {d['heldout_chunks']} chunks of held-out "
          f"episodes {d['heldout_seeds'][0]}..{d['heldout_seeds'][1]}; H={d['horizon']} at {d['fps']} Hz "
          f"({d['horizon'] / d['fps']:.2f} s)")
    print(f"\n{'tokenizer':<22s}{'vocab':>6s}{'tokens/chunk':>13s}{'(max)':>6s}{'tokens/s':>9s}{'RMSE deg':>9s}"
          f"{'max deg':>8s}{'gripper':>8s}")
    print(f"{'naive 256 bins':<22s}{256:>6d}{naive['tokens_mean']:>13.1f}{naive['tokens_max']:>6d}"
          f"{naive['tokens_per_s']:>9.1f}{naive['rmse_arm_deg']:>9.3f}{naive['max_arm_deg']:>8.2f}"
          f"{naive['rmse_gripper']:>8.3f}")
    for s, row in r["scales"].items():
        print(f"{'FAST scale ' + format(float(s), 'g'):<22s}{row['vocab_size']:>6d}{row['tokens_mean']:>13.1f}"
              f"{row['tokens_max']:>6d}{row['tokens_per_s']:>9.1f}{row['rmse_arm_deg']:>9.3f}{row['max_arm_deg']:>8.2f}"
              f"{row['rmse_gripper']:>8.3f}")
    for key, what in (("match_all", "all held-out chunks"), ("match_in_range", "held-out chunks inside naive's range")):
        m = r[key]
        extra = f" ({m['chunks']} of {d['heldout_chunks']})" if "chunks" in m else ""
        print(f"\nRMSE-matched, {what}{extra}: naive {m['naive_rmse_arm_deg']:.3f} deg in 96 tokens; FAST reaches "
              f"{m['rmse_arm_deg']:.3f} deg at scale {m['scale']:.3g} in {m['tokens_mean']:.1f} tokens "
              f"({96 / m['tokens_mean']:.1f}x fewer)")
    print(f"\ncontrol rate (same {d['horizon'] / d['fps']:.2f} s chunks, resampled, scale {DEFAULT_SCALE:g}, vocab "
          f"{DEFAULT_VOCAB_SIZE}, refitted per rate):")
    print(f"{'':13s}{'naive':>7s}{'FAST at scale 10':>26s}{'FAST at the 30 Hz error':>33s}")
    print(f"{'rate':>8s}{'H':>5s}{'tokens':>7s}{'tokens':>8s}{'tokens/s':>9s}{'RMSE deg':>9s}{'scale':>9s}"
          f"{'tokens':>8s}{'tokens/s':>9s}{'RMSE deg':>9s}")
    for f, row in r["rates"].items():
        se = row["same_error"]
        print(f"{row['hz']:>6d}Hz{row['horizon']:>5d}{row['naive_tokens']:>7d}{row['tokens_mean']:>8.1f}"
              f"{row['tokens_per_s']:>9.1f}{row['rmse_arm_deg']:>9.3f}{se['scale']:>9.3g}{se['tokens_mean']:>8.1f}"
              f"{se['tokens_per_s']:>9.1f}{se['rmse_arm_deg']:>9.3f}")
    print("\nvocabulary size at scale 10: " + ", ".join(f"{v}: {row['tokens_mean']:.1f} tokens"
                                                      for v, row in r["vocabs"].items()))
    rx = r["relaxed"]
    print(f"relaxed decoding: {rx['calls']} decodes of truncated / over-long / garbage lists, {rx['raised']} raised, "
          f"{rx['wrong_shape']} of the wrong shape, {rx['repaired_and_counted']} repaired and counted")
    if "latency" in r:
        la = r["latency"]
        print(f"one chunk, 1 thread: pi0_base's backbone writing {la['fast_tokens']} FAST tokens "
              f"{la['ms_fast_autoregressive']:.1f} ms, its flow expert (10 Euler steps) "
              f"{la['ms_flow_10_steps']:.1f} ms "
              f"({la['ratio']:.1f}x)")
    ratio = naive["tokens_mean"] / r["scales"][DEFAULT_SCALE]["tokens_mean"]
    print("\ntargets:")
    print(f"  [{'met' if ratio >= 3 else 'MISSED'}] scale 10: {ratio:.1f}x fewer tokens per chunk than naive "
          "256-bin binning (target >= 3x)")
    for key in ("match_all", "match_in_range"):
        m = r[key]
        print(f"  [measured] at the RMSE of naive binning ({key}): {m['tokens_mean']:.1f} FAST tokens, "
              f"scale {m['scale']:.3g}")
    print(f"  [{'met' if rx['raised'] == 0 and rx['wrong_shape'] == 0 else 'MISSED'}] decode never raises "
          f"({rx['calls']} adversarial decodes)")
    print(f"\n({r['seconds']:.0f} s)")


def fit_shipped(path: Path) -> FASTTokenizer:
    train = episode_chunks(expert_episodes(TRAIN_SEEDS), stride=1)
    tok = FASTTokenizer.fit(train, scale=DEFAULT_SCALE, vocab_size=DEFAULT_VOCAB_SIZE, metadata={
        "command": COMMAND, "data": f"every {H}-step window of the scripted expert's pick_place episodes, seeds "
        f"{TRAIN_SEEDS[0]}..{TRAIN_SEEDS[-1]} ({len(train)} chunks), absolute joint targets (deg; gripper 0..100)"})
    tok.save(path)
    print(f"wrote {path}: {tok}")
    return tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", type=Path, help="fit the shipped tokenizer and write it here")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--no-latency", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.fit:
        fit_shipped(args.fit)
        return
    r = run(with_latency=not args.no_latency)
    report(r)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1, default=float))


if __name__ == "__main__":
    main()
