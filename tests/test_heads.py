"""Tests for vla_course.heads: the three action heads, their samplers, toy data and metrics."""

import math

import lerobot.policies.common.flow_matching as common
import pytest
import scipy.stats as scipy_stats
import torch

from vla_course.heads import fit_head, metrics, toy
from vla_course.heads import diffusion as D
from vla_course.heads import flow as F

SMALL = dict(hidden=64, depth=2, batch_size=128)




# ---------------------------------------------------------------- training
@pytest.mark.parametrize("kind", ["regression", "diffusion", "flow"])
def test_loss_falls(kind):
    # conditioned on a noisy x coordinate, so that even regression has something to learn
    actions = toy.two_moons(1000)
    cond = actions[:, :1] + 0.1 * torch.randn(1000, 1, generator=torch.Generator().manual_seed(0))
    head = fit_head(kind, actions, cond=cond, steps=300, **SMALL)
    first, last = sum(head.losses[:20]) / 20, sum(head.losses[-20:]) / 20
    assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("kind", ["regression", "diffusion", "flow"])
@pytest.mark.parametrize("shape", [(64, 3), (64, 5, 2)])
@pytest.mark.parametrize("with_cond", [False, True])
def test_sample_shapes(kind, shape, with_cond):
    """Samples come back in the action's shape, in the data's units (not normalised ones), one per condition row."""
    g = torch.Generator().manual_seed(0)
    actions = 50.0 + 10.0 * torch.randn(shape, generator=g)  # far from N(0, 1): un-normalisation must happen
    cond = torch.randn(shape[0], 4, generator=g) if with_cond else None
    head = fit_head(kind, actions, cond=cond, steps=3, **SMALL)
    if with_cond:
        c = torch.randn(7, 4, generator=g)
        out = head.sample(cond=c, num_steps=3)
        other = head.sample(cond=c + 3.0, num_steps=3)
        assert not torch.allclose(out, other)  # the condition reaches the network
    else:
        out = head.sample(7, num_steps=3)
    assert out.shape == (7, *shape[1:])
    assert torch.isfinite(out).all()
    assert 20.0 < float(out.mean()) < 80.0  # the training data's units (mean 50), not the network's


@pytest.mark.parametrize("kind", ["regression", "diffusion", "flow"])
def test_seeded_and_deterministic(kind):
    data = toy.two_moons(256)
    a = fit_head(kind, data, steps=20, seed=3, **SMALL).sample(50, num_steps=4)
    b = fit_head(kind, data, steps=20, seed=3, **SMALL).sample(50, num_steps=4)
    c = fit_head(kind, data, steps=20, seed=4, **SMALL).sample(50, num_steps=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_flow_on_a_single_point_samples_that_point():
    point = torch.tensor([0.7, -1.3])
    head = fit_head("flow", point.expand(256, 2).clone(), steps=600, hidden=128, batch_size=128)
    samples = head.sample(200, num_steps=10)  # from noise of std 1 around the point
    assert (samples - point).norm(dim=1).max() < 0.05


def test_ddim_and_ddpm_agree_on_a_gaussian():
    mean, std = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.5])
    data = mean + std * torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    head = fit_head("diffusion", data, steps=600, **SMALL)
    ddpm = head.sample(3000, num_steps=D.NUM_TRAIN_STEPS, sampler="ddpm")
    ddim = head.sample(3000, num_steps=D.NUM_TRAIN_STEPS, sampler="ddim")
    for s in (ddpm, ddim):  # both recover the Gaussian's mean and spread
        assert ((s.mean(0) - mean).abs() / std).max() < 0.15
        assert ((s.std(0) / std).log().abs()).max() < 0.25
    assert ((ddpm.mean(0) - ddim.mean(0)).abs() / std).max() < 0.15


def test_regression_averages_the_modes_generative_heads_do_not():
    data = toy.obstacle_trajectories(1000, horizon=8, seed=0)
    through = {}
    for kind in ("regression", "flow"):
        head = fit_head(kind, data.actions, steps=300, **SMALL)
        through[kind] = toy.passes_through(head.sample(200), toy.OBSTACLE_CENTER).float().mean().item()
    assert through["regression"] > 0.9
    assert through["flow"] < 0.5


# ---------------------------------------------------------------- flow pieces
def test_time_sampler_matches_lerobot_beta():
    ours = F.sample_time(20000, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    theirs = common.sample_time_beta(20000, "cpu", alpha=1.5, beta=1.0, scale=0.999, offset=0.001)
    assert 0.001 <= ours.min() and ours.max() <= 1.0
    assert scipy_stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > 0.001
    # and both follow Beta(1.5, 1): mean 0.6 * 0.999 + 0.001
    assert abs(ours.mean().item() - (0.6 * 0.999 + 0.001)) < 0.01


def test_euler_matches_lerobot():
    w = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    v = lambda x, t, cond=None: x @ w * t[:, None] + 0.5  # noqa: E731
    noise = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    ours = F.euler_integrate(v, noise, num_steps=7)
    theirs = common.euler_integrate(lambda x, t: v(x, t), noise, num_steps=7)
    torch.testing.assert_close(ours, theirs)


def test_straight_path_and_target():
    a, e = torch.randn(4, 2), torch.randn(4, 2)
    torch.testing.assert_close(F.interpolate(a, e, torch.ones(4)), e)   # t = 1 is noise
    torch.testing.assert_close(F.interpolate(a, e, torch.zeros(4)), a)  # t = 0 is data
    # the exact velocity integrates noise to the action in a single Euler step
    out = F.euler_integrate(lambda x, t, c: F.velocity_target(a, e), e, num_steps=1)
    torch.testing.assert_close(out, a)


# ---------------------------------------------------------------- diffusion pieces
def test_schedule_and_timesteps():
    ab = D.cosine_alpha_bar(100)
    assert ab.shape == (100,) and (ab[1:] < ab[:-1]).all() and ab[0] > 0.99 and ab[-1] < 1e-3
    assert D.sampling_timesteps(1) == [99]
    assert D.sampling_timesteps(100) == list(range(99, -1, -1))
    assert D.sampling_timesteps(10)[0] == 99 and D.sampling_timesteps(10)[-1] == 9
    with pytest.raises(ValueError):
        D.sampling_timesteps(101)


def test_ddim_step_with_true_noise_recovers_the_action():
    a, e = torch.randn(6, 2), torch.randn(6, 2)
    ab = D.cosine_alpha_bar()
    x = D.add_noise(a, e, ab[50].expand(6))
    x_prev, x0 = D.ddim_step(x, e, ab[50].item(), 1.0, eta=0.0)
    torch.testing.assert_close(x0, a)
    torch.testing.assert_close(x_prev, a)


# ---------------------------------------------------------------- toy data and metrics
def test_obstacle_data_goes_around():
    for conditional in (False, True):
        d = toy.obstacle_trajectories(500, conditional=conditional, seed=1)
        assert d.actions.shape == (500, 16, 2)
        assert not toy.passes_through(d.actions, d.centers, d.radius).any()
        mean_traj = d.actions.mean(0, keepdim=True)
        if not conditional:  # the average of the two answers hits the obstacle
            assert toy.passes_through(mean_traj, toy.OBSTACLE_CENTER).all()
        else:
            assert d.cond.shape == (500, 1)
            assert (torch.sign(d.cond[:, 0]) == -d.side).all()
    line = torch.stack([torch.linspace(0, 1, 2), torch.zeros(2)], -1)[None]  # 2 waypoints, segment test
    assert toy.passes_through(line, (0.5, 0.0)).all()
    assert not toy.passes_through(line + torch.tensor([0.0, 0.2]), (0.5, 0.0)).any()


def test_obstacle_p_above_is_the_share_going_above():
    d = toy.obstacle_trajectories(4000, p_above=0.8, seed=0)
    assert abs((d.side > 0).float().mean().item() - 0.8) < 0.03
    assert ((d.actions[:, 8, 1] > 0) == (d.side > 0)).all()


def test_normalize_cond_is_public_and_matches_training():
    d = toy.obstacle_trajectories(200, conditional=True, seed=0)
    head = fit_head("regression", d.actions, cond=d.cond, steps=2, hidden=16)
    c = head.normalize_cond(d.cond)
    torch.testing.assert_close(c.mean(0), torch.zeros(1), atol=1e-5, rtol=0)
    assert head.normalize_cond(None) is None


def test_mode_coverage_on_known_data():
    centers = toy.ring_centers(8)
    full = toy.ring_of_gaussians(4000, std=0.05, seed=0)
    m = metrics.mode_coverage(full, centers, radius=0.3)
    assert m["precision"] > 0.99 and m["coverage"] == 1.0 and m["weight_tv"] < 0.01
    half = full[torch.cdist(full, centers).argmin(1) < 4]  # modes 0-3 only
    m = metrics.mode_coverage(half, centers, radius=0.3)
    assert m["coverage"] == 0.5 and abs(m["weight_tv"] - 0.5) < 0.01
    off = torch.zeros(100, 2)  # the centre of the ring is on no mode
    assert metrics.mode_coverage(off, centers, radius=0.3)["precision"] == 0.0


def test_sliced_wasserstein_and_straightness():
    x = toy.two_moons(3000, seed=0)
    assert metrics.sliced_wasserstein(x, x) < 1e-9
    shift = torch.tensor([0.6, 0.8])  # |shift| = 1; SW2 of a shift in 2-D is |shift| / sqrt(2)
    assert abs(metrics.sliced_wasserstein(x + shift, x, num_projections=2000) - 1 / math.sqrt(2)) < 0.03
    assert metrics.sliced_wasserstein(toy.two_moons(3000, seed=1), x) < 0.05
    t = torch.linspace(0, 1, 11)[:, None, None]
    straight = t * torch.ones(1, 4, 2)
    assert abs(metrics.path_straightness(straight) - 1) < 1e-6
    zigzag = straight.clone()
    zigzag[1::2, :, 1] += 0.3
    assert metrics.path_straightness(zigzag) < 0.8


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [
    dict(kind="gan"),
    dict(actions=torch.randn(10)),
    dict(actions=torch.randn(2, 3, 4, 5)),
    dict(actions=torch.tensor([[0.0, float("nan")]] * 4)),
    dict(cond=torch.randn(9, 2)),
    dict(cond=torch.randn(10)),
    dict(cond=torch.full((10, 2), float("inf"))),
    dict(steps=-1),
    dict(nonsense=1),
    dict(actions="abc"),
])
def test_bad_inputs_raise(bad):
    args = dict(kind="flow", actions=torch.randn(10, 2), cond=None, steps=1)
    args.update(bad)
    with pytest.raises(ValueError):
        fit_head(args.pop("kind"), args.pop("actions"), **args)


def test_bad_sampling_raises():
    head = fit_head("diffusion", torch.randn(10, 2), steps=1, **SMALL)
    for kwargs in (dict(num_samples=0), dict(num_samples=5, num_steps=0), dict(cond=torch.randn(5, 1)),
                   dict(num_samples=5, sampler="euler"), dict(num_samples=5, num_steps=1000), dict()):
        with pytest.raises(ValueError):
            head.sample(**kwargs)
    conditioned = fit_head("flow", torch.randn(10, 2), cond=torch.randn(10, 3), steps=1, **SMALL)
    with pytest.raises(ValueError):
        conditioned.sample(5)  # trained with cond: needs cond
    with pytest.raises(ValueError):
        conditioned.sample(cond=torch.randn(5, 2))  # wrong cond width


def test_rectified_straightness():
    t = torch.linspace(0, 1, 11)[:, None, None]
    straight = t * torch.ones(1, 4, 2)
    assert metrics.rectified_straightness(straight) < 1e-10
    uneven = (t ** 3) * torch.ones(1, 4, 2)  # straight line, uneven speed
    assert metrics.rectified_straightness(uneven) > 0.3


# ---------------------------------------------------------------- time weighting
def test_time_samplers_of_both_heads():
    g = torch.Generator().manual_seed(0)
    t_beta, t_unif = F.training_times(20000, g, "beta"), F.training_times(20000, g, "uniform")
    assert abs(t_beta.mean().item() - (0.6 * 0.999 + 0.001)) < 0.01   # Beta(1.5, 1): mean 0.6
    assert abs(t_unif.mean().item() - 0.5) < 0.01 and 0.001 <= t_unif.min() and t_unif.max() <= 1.0
    k_unif = D.training_steps(20000, 100, g, "uniform")
    k_beta = D.training_steps(20000, 100, g, "beta")
    assert k_unif.min() == 0 and k_unif.max() == 99 and abs(k_unif.float().mean().item() - 49.5) < 1.0
    assert 0 <= k_beta.min() and k_beta.max() <= 99
    # the diffusion time (k + 1) / T of the "beta" steps follows the flow head's Beta(1.5, 1) (to 1/T)
    assert abs(((k_beta + 1) / 100).float().mean().item() - 0.6) < 0.012
    assert ((k_beta + 1) / 100 > 0.5).float().mean().item() > 0.6   # P(t > 0.5) = 1 - 0.5**1.5 = 0.65
    with pytest.raises(ValueError):
        F.training_times(10, g, "cosine")


def test_time_sampler_option():
    data = toy.two_moons(256)
    for kind, default in (("flow", "beta"), ("diffusion", "uniform")):
        assert fit_head(kind, data, steps=1, **SMALL).time_sampler == default
        other = "uniform" if default == "beta" else "beta"
        a = fit_head(kind, data, steps=30, time_sampler=other, **SMALL)
        b = fit_head(kind, data, steps=30, **SMALL)
        assert a.time_sampler == other and a.losses != b.losses   # the option changes the training
    for bad in (dict(kind="regression", time_sampler="beta"), dict(kind="flow", time_sampler="cosine"),
                dict(kind="diffusion", time_sampler=None)):
        with pytest.raises(ValueError):
            fit_head(bad.pop("kind"), data, steps=1, **bad)


# ---------------------------------------------------------------- rectified flow
def test_paired_noise_training_learns_the_coupling():
    # pairs (z, a = f(z)), f monotone: trained on each action's own noise, one Euler step learns the map;
    # with fresh noise one step can only reach the mean action
    f = lambda z: 2 + 0.5 * z + 0.1 * z ** 3  # noqa: E731
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 1, generator=g)
    paired = F.reflow(fit_head("flow", f(z), steps=0, **SMALL), z, f(z), steps=300)
    fresh = fit_head("flow", f(z), steps=300, **SMALL)
    z_new = torch.randn(500, 1, generator=g)
    err = {name: (h.sample(noise=z_new, num_steps=1) - f(z_new)).abs().mean().item()
           for name, h in (("paired", paired), ("fresh", fresh))}
    assert err["paired"] < 0.1 and err["fresh"] > 0.4, err


def test_reflow_pairs_and_reflow():
    data = toy.ring_of_gaussians(2000, seed=0)
    head = fit_head("flow", data, steps=300, **SMALL)
    z, x = F.reflow_pairs(head, 1000, num_steps=50, seed=3)
    assert z.shape == x.shape == (1000, 2)
    torch.testing.assert_close(z, torch.randn(1000, 2, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(x, head.sample(noise=z, num_steps=50))
    stats = (head.action_mean.clone(), head.action_std.clone(), list(head.losses))
    new = F.reflow(head, z, x, steps=300)
    # the copy keeps the normalisation (the same latent means the same thing); the teacher is unchanged
    torch.testing.assert_close(new.action_mean, head.action_mean)
    torch.testing.assert_close(head.action_std, stats[1])
    assert head.losses == stats[2] and len(new.losses) == 300
    z_eval = torch.randn(500, 2, generator=torch.Generator().manual_seed(9))
    s_old = metrics.rectified_straightness(head.sample_path(noise=z_eval, num_steps=20))
    s_new = metrics.rectified_straightness(new.sample_path(noise=z_eval, num_steps=20))
    assert s_new < 0.3 * s_old, (s_old, s_new)   # straighter paths
    # one step of the reflowed head lands near where the teacher's 50 steps go
    one = (new.sample(noise=z_eval, num_steps=1) - head.sample(noise=z_eval, num_steps=50)).norm(dim=1).mean()
    one_old = (head.sample(noise=z_eval, num_steps=1) - head.sample(noise=z_eval, num_steps=50)).norm(dim=1).mean()
    assert one < 0.5 * one_old, (one, one_old)


def test_reflow_with_cond_and_bad_input():
    d = toy.obstacle_trajectories(300, horizon=4, conditional=True, seed=0)
    head = fit_head("flow", d.actions, cond=d.cond, steps=5, **SMALL)
    z, x = F.reflow_pairs(head, cond=d.cond, num_steps=3)
    assert z.shape == x.shape == d.actions.shape
    new = F.reflow(head, z, x, cond=d.cond, steps=5)
    assert new.sample(cond=d.cond[:7], num_steps=2).shape == (7, 4, 2)
    with pytest.raises(ValueError):
        F.reflow_pairs(fit_head("diffusion", d.actions, steps=1, **SMALL), 10)
    with pytest.raises(ValueError):
        F.reflow_pairs(fit_head("flow", d.actions, steps=1, **SMALL), 0)
    with pytest.raises(ValueError):  # paired noise must match the actions
        F.reflow(head, z[:, :2], x, cond=d.cond, steps=1)
    with pytest.raises(ValueError):  # only the flow head trains on paired noise
        fit_head("diffusion", d.actions, steps=0, **SMALL).fit(d.actions, steps=1, noise=z)


# ---------------------------------------------------------------- figures that play without a kernel
def test_animation_outputs_play_offline():
    import matplotlib
    matplotlib.use("Agg")
    from vla_course.viz import anim as va
    from vla_course.viz import heads as vh

    paths = {"ddpm": torch.randn(4, 30, 2), "flow": torch.randn(3, 30, 2)}
    anim = vh.animate_paths(paths, interval=100)
    html = va.jshtml(anim, default_mode="once")
    assert "font-awesome" not in html and "<i class=" not in html and html.count("<svg") == 9
    gif = va.to_gif(anim, hold_last_s=1.0)
    assert gif[:6] == b"GIF89a"
    from PIL import Image
    import io
    import numpy as np
    im = Image.open(io.BytesIO(gif))
    assert im.n_frames == 4 and im.size == (960, 350)   # dpi 100
    assert va.gif_html(gif).startswith('<img src="data:image/gif;base64,')
    import base64
    assert base64.b64decode(va.gif_output(gif)["image/gif"]) == gif and va.gif_output(gif)["text/html"] == va.gif_html(gif)
    strip = Image.open(io.BytesIO(va.gif_strip(gif, n=3)))   # the still beside the animation: first, middle, last
    w, h = im.size
    assert strip.format == "PNG" and strip.size == (3 * w, h)
    im.seek(0)
    first = np.asarray(im.convert("RGB"))
    im.seek(im.n_frames - 1)
    last = np.asarray(im.convert("RGB"))
    pixels = np.asarray(strip.convert("RGB"))
    assert np.array_equal(pixels[:, :w], first) and np.array_equal(pixels[:, 2 * w:], last)
    assert not np.array_equal(first, last)
    chunks = {"ddpm": torch.randn(11, 5, 8, 2), "flow": torch.randn(3, 5, 8, 2)}
    through = {k: torch.tensor([True, False, False, False, True]) for k in chunks}
    assert Image.open(io.BytesIO(va.to_gif(vh.animate_chunks(chunks, num_frames=3, through=through)))).n_frames == 3


def test_plotly_steps_figure():
    from vla_course.viz import anim as va
    from vla_course.viz import heads as vh

    samples = {m: {k: torch.randn(20, 2) for k in (1, 2, 10)} for m in ("ddpm", "flow")}
    fig = vh.plotly_samples_by_steps(samples, ref=torch.randn(50, 2))
    assert [f.name for f in fig.frames] == ["1", "2", "10"]
    assert [s.label for s in fig.layout.sliders[0].steps] == ["1", "2", "10"]
    assert fig.layout.annotations[0].text == "ddpm, 1 step"
    assert fig.frames[2].layout.annotations[1].text == "flow, 10 steps"
    bundle = va.plotly_bundle(fig)
    assert "application/vnd.plotly.v1+json" in bundle and "cdn.plot.ly" in bundle["text/html"]
    assert vh.plural(1, "step") == "1 step" and vh.plural(3, "step") == "3 steps"


def test_keep_gif_writes_once_and_leaves_the_same_bytes_alone(tmp_path):
    from vla_course.viz import anim as va

    path = tmp_path / "figures" / "a.gif"
    assert va.keep_gif(b"GIF89a-one", path) and path.read_bytes() == b"GIF89a-one"
    before = path.stat().st_mtime_ns
    assert not va.keep_gif(b"GIF89a-one", path) and path.stat().st_mtime_ns == before   # a re-run: untouched
    assert va.keep_gif(b"GIF89a-two", path) and path.read_bytes() == b"GIF89a-two"     # new frames: replaced
