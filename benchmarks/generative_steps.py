"""Quality vs number of sampling steps for DDPM, DDIM and flow matching.

Trains a diffusion head and a flow head with the *same* network, data and
budget (``fit_head`` defaults) on each toy set, then samples the same noise
with 1..100 steps and prints, per step count, the sliced Wasserstein distance
to a large fresh sample of the true distribution (it sees both precision and
mode weights; lower is better) and milliseconds per sample on one CPU thread.

    .venv/bin/python benchmarks/generative_steps.py               # ring, moons, obstacle chunks
    .venv/bin/python benchmarks/generative_steps.py --sets ring --train-steps 4000

Timings are wall-clock on a possibly shared CPU: compare them within a run.
"""

from __future__ import annotations

import argparse
import time

import torch

from vla_course.heads import fit_head, metrics, toy

STEPS = (1, 2, 5, 10, 20, 50, 100)


def make_set(name: str, n: int, seed: int):
    if name == "ring":
        return toy.ring_of_gaussians(n, seed=seed)
    if name == "moons":
        return toy.two_moons(n, seed=seed)
    if name == "obstacle":
        return toy.obstacle_trajectories(n, seed=seed).actions
    raise ValueError(f"unknown set {name!r}")


def run(name: str, train_steps: int, n_eval: int, seed: int) -> dict:
    data, ref = make_set(name, 4000, seed), make_set(name, 20000, seed + 1)
    floor = metrics.sliced_wasserstein(make_set(name, n_eval, seed + 2), ref)
    t0 = time.perf_counter()
    diff = fit_head("diffusion", data, steps=train_steps, seed=seed)
    t1 = time.perf_counter()
    flow = fit_head("flow", data, steps=train_steps, seed=seed)
    t2 = time.perf_counter()
    samplers = {"ddpm": (diff, {"sampler": "ddpm"}), "ddim": (diff, {"sampler": "ddim"}), "flow": (flow, {})}
    noise = torch.randn((n_eval, *data.shape[1:]), generator=torch.Generator().manual_seed(seed + 3))
    swd, ms, extra = {}, {}, {}
    for m, (head, kw) in samplers.items():
        for k in STEPS:
            x = head.sample(noise=noise, num_steps=k, **kw)
            swd[m, k] = metrics.sliced_wasserstein(x, ref)
            if name == "obstacle":
                extra[m, k] = toy.passes_through(x, toy.OBSTACLE_CENTER).float().mean().item()
            elif name == "ring":
                extra[m, k] = metrics.mode_coverage(x, toy.ring_centers(), radius=0.3)["precision"]
            ms[m, k] = metrics.ms_per_sample(lambda: head.sample(500, num_steps=k, **kw), 500, repeats=2)
    return dict(floor=floor, swd=swd, ms=ms, extra=extra, fit_s=(t1 - t0, t2 - t1), samplers=list(samplers))


def report(name: str, r: dict) -> None:
    extra_name = {"obstacle": "through obstacle %", "ring": "precision %"}.get(name)
    print(f"\n== {name}: sliced Wasserstein to the true distribution (lower is better); "
          f"noise floor {r['floor']:.3f}; training {r['fit_s'][0]:.1f} s (diffusion), {r['fit_s'][1]:.1f} s (flow)")
    head = f"{'steps':>5} | " + "".join(f"{m:>7}" for m in r["samplers"]) + " | ms/sample: " + "".join(
        f"{m:>7}" for m in r["samplers"])
    if extra_name:
        head += f" | {extra_name}: " + "".join(f"{m:>5}" for m in r["samplers"])
    print(head)
    for k in STEPS:
        line = f"{k:>5} | " + "".join(f"{r['swd'][m, k]:>7.3f}" for m in r["samplers"]) + " |            " + "".join(
            f"{r['ms'][m, k]:>7.3f}" for m in r["samplers"])
        if extra_name:
            line += " | " + " " * (len(extra_name) + 1) + "".join(f"{100 * r['extra'][m, k]:>5.0f}" for m in r["samplers"])
        print(line)
    q = r["swd"]
    verdict = "MET" if q["flow", 10] <= 1.05 * q["ddpm", 100] else "NOT met"
    print(f"goal 'flow@10 at least as good as DDPM@100' (5% tolerance): {verdict} "
          f"(flow@10 {q['flow', 10]:.3f}, DDPM@100 {q['ddpm', 100]:.3f}, DDIM@100 {q['ddim', 100]:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["ring", "moons", "obstacle"])
    ap.add_argument("--train-steps", type=int, default=2000)
    ap.add_argument("--n-eval", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    for name in args.sets:
        report(name, run(name, args.train_steps, args.n_eval, args.seed))


if __name__ == "__main__":
    main()
