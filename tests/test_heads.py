"""Tests for vla_course.heads: the three action heads, their samplers, toy data and metrics."""

import math

import pytest
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
    actions = torch.randn(shape)
    cond = torch.randn(shape[0], 4) if with_cond else None
    head = fit_head(kind, actions, cond=cond, steps=3, **SMALL)
    if with_cond:
        out = head.sample(cond=torch.randn(7, 4), num_steps=3)
    else:
        out = head.sample(7, num_steps=3)
    assert out.shape == (7, *shape[1:])
    assert torch.isfinite(out).all()


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
    scipy_stats = pytest.importorskip("scipy.stats")
    common = pytest.importorskip("lerobot.policies.common.flow_matching")
    ours = F.sample_time(20000, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    theirs = common.sample_time_beta(20000, "cpu", alpha=1.5, beta=1.0, scale=0.999, offset=0.001)
    assert 0.001 <= ours.min() and ours.max() <= 1.0
    assert scipy_stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > 0.001
    # and both follow Beta(1.5, 1): mean 0.6 * 0.999 + 0.001
    assert abs(ours.mean().item() - (0.6 * 0.999 + 0.001)) < 0.01


def test_euler_matches_lerobot():
    common = pytest.importorskip("lerobot.policies.common.flow_matching")
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
