"""pi0 in miniature: shapes, cached sampling, the KI switch, normalisation, overfitting, checkpoints."""

import pytest
import torch

from vla_course.constants import NUM_JOINTS
from vla_course.models import Pi0, Pi0Config, TinyVLM, VLMConfig, count_parameters
from vla_course.models.synthetic import course_tokenizer, random_pi0_batch, stats_from_batch, tiny_pi0




def _ready(chunk=4, **kw):
    model = tiny_pi0(chunk_size=chunk, **kw)
    batch = random_pi0_batch(3, chunk, seed=1)
    model.set_normalization_stats(stats_from_batch(batch))
    return model, batch


def test_default_model_shapes_and_parameter_counts():
    torch.manual_seed(0)
    model = Pi0(TinyVLM(course_tokenizer(), VLMConfig()), Pi0Config())
    assert model.config.chunk_size == 16
    batch = random_pi0_batch(2, 16)
    model.set_normalization_stats(stats_from_batch(batch))
    assert model.compute_loss(batch).ndim == 0
    assert model.compute_loss(batch, reduction="none").shape == (2, 16, NUM_JOINTS)
    assert model.sample_actions(batch).shape == (2, 16, NUM_JOINTS)
    c = count_parameters(model)
    assert c["total"] == sum(p.numel() for p in model.parameters())
    assert c["total"] == sum(v for k, v in c.items() if k != "total")
    assert c["action_expert"] < c["backbone"] / 2  # narrower expert, same depth/heads
    assert 300_000 < c["total"] < 1_000_000
    # expert shares the backbone's heads and head dim, but has its own (narrower) weights
    e, b = model.action_expert.layers[0], model.vlm.backbone.layers[0]
    assert e.qkv.weight.shape[0] == b.qkv.weight.shape[0] and e.qkv.weight.shape[1] == b.qkv.weight.shape[1] // 2


def test_cached_sampling_equals_uncached():
    model, batch = _ready()
    batch["task"] = ["pick up the red cube", "stack", "push the purple cube to the right"]  # padded prompts
    noise = torch.randn(3, 4, NUM_JOINTS)
    fast = model.sample_actions(batch, noise=noise)
    slow = model.sample_actions(batch, noise=noise, use_cache=False)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(fast, model.sample_actions(batch, noise=noise + 1))


@pytest.mark.parametrize("prompts,num_steps", [(["pick up the red cube"], 10),
                                               (["pick up the red cube", "stack the green cube"], 3)])
def test_cached_sampler_folds_norm_scales_and_dt_exactly(prompts, num_steps):
    # Trained norms are not all-ones: give every RMSNorm (and every other weight) random values,
    # so folding the norm scales, the final norm and dt into the linears is really exercised.
    # One prompt: no padding, the sampler drops the mask; two prompts of different lengths: padded keys.
    model, batch = _ready()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    batch = {k: (v[: len(prompts)] if torch.is_tensor(v) else v) for k, v in batch.items()}
    batch["task"] = prompts
    noise = torch.randn(len(prompts), 4, NUM_JOINTS, generator=g)
    fast = model.sample_actions(batch, num_steps=num_steps, noise=noise)
    slow = model.sample_actions(batch, num_steps=num_steps, noise=noise, use_cache=False)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(fast, model.sample_actions(batch, num_steps=num_steps + 1, noise=noise))


def test_sampling_depends_on_images_state_and_task():
    model, batch = _ready()
    noise = torch.randn(3, 4, NUM_JOINTS)
    base = model.sample_actions(batch, noise=noise)
    for change in ("observation.images.wrist", "observation.state", "task"):
        other = dict(batch)
        if change == "task":
            other["task"] = ["stack the green cube on the yellow cube"] * 3
        elif change == "observation.state":
            other[change] = batch[change] + 20.0
        else:
            other[change] = 255 - batch[change]
        assert not torch.allclose(base, model.sample_actions(other, noise=noise)), change


@pytest.mark.parametrize("to_backbone", [True, False])
def test_action_loss_to_backbone_switch(to_backbone):
    model, batch = _ready(action_loss_to_backbone=to_backbone)
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.full((3,), 0.5)
    loss = model.compute_loss(batch, noise=noise, time=t)
    loss.backward()
    vlm_grads = {n: p.grad for n, p in model.vlm.named_parameters()}
    other = {n: p.grad for n, p in model.named_parameters() if not n.startswith("vlm.")}
    assert all(torch.isfinite(g).all() for g in list(other.values()) + list(vlm_grads.values()) if g is not None)
    assert all(g is not None and g.abs().max() > 0 for g in other.values()), "expert must always learn"
    if to_backbone:
        assert model.vlm.backbone.layers[0].qkv.weight.grad.abs().max() > 0
        assert model.vlm.vision.stem[0].weight.grad.abs().max() > 0
        assert model.vlm.embed.weight.grad.abs().max() > 0
    else:
        assert all(g is None or g.abs().max() == 0 for g in vlm_grads.values())
    # the switch changes gradients only, never the loss value
    model.config.action_loss_to_backbone = not to_backbone
    torch.testing.assert_close(model.compute_loss(batch, noise=noise, time=t), loss)


def test_normalisation_is_required_and_saved(tmp_path):
    model = tiny_pi0()
    batch = random_pi0_batch(2, 4)
    with pytest.raises(RuntimeError, match="set_normalization_stats"):
        model.compute_loss(batch)
    model.set_normalization_stats(stats_from_batch(batch))
    assert "action_normalizer.mean" in model.state_dict() and "state_normalizer.std" in model.state_dict()
    noise = torch.randn(2, 4, NUM_JOINTS)
    before = model.sample_actions(batch, noise=noise)
    model.save_pretrained(tmp_path)
    again = Pi0.from_pretrained(tmp_path)
    torch.testing.assert_close(again.action_normalizer.mean, model.action_normalizer.mean)
    torch.testing.assert_close(again.sample_actions(batch, noise=noise), before)
    # actions come out in the data's units (degrees), not normalised units
    assert before.abs().mean() > 5.0


def test_finer_image_grid_and_keypoints_round_trip_through_a_checkpoint(tmp_path):
    model = tiny_pi0()
    model.vlm.set_grid(3)  # as the pi0 recipe does to a pretrained VLM
    model.vlm.add_keypoints(5, layer=1)
    batch = random_pi0_batch(2, 4)
    model.set_normalization_stats(stats_from_batch(batch))
    prefix, _ = model.vlm.embed_prefix(batch, batch["task"])
    # 2 cameras x (3x3 grid + 5 keypoints), then <bos> + words
    assert prefix.shape[1] == 2 * (9 + 5) + max(len(t.split()) for t in batch["task"]) + 1
    noise = torch.randn(2, 4, NUM_JOINTS)
    torch.testing.assert_close(model.sample_actions(batch, noise=noise),
                               model.sample_actions(batch, noise=noise, use_cache=False), atol=1e-4, rtol=1e-4)
    model.save_pretrained(tmp_path)
    again = Pi0.from_pretrained(tmp_path)
    assert (again.vlm.config.grid, again.vlm.config.keypoints, again.vlm.config.keypoint_layer) == (3, 5, 1)
    torch.testing.assert_close(again.sample_actions(batch, noise=noise), model.sample_actions(batch, noise=noise))


def test_quantile_normalisation_option():
    torch.manual_seed(0)
    model = Pi0(TinyVLM(course_tokenizer(), tiny_pi0().vlm.config),
                Pi0Config(chunk_size=4, expert_width=16, expert_mlp_dim=32, normalization="quantile"))
    batch = random_pi0_batch(3, 4)
    model.set_normalization_stats(stats_from_batch(batch))
    assert torch.isfinite(model.compute_loss(batch))


def test_action_padding_and_shape_errors():
    model, batch = _ready()
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.rand(3)
    full = model.compute_loss(batch, noise=noise, time=t, reduction="none")
    pad = torch.zeros(3, 4, dtype=torch.bool)
    pad[:, -1] = True
    masked = model.compute_loss(dict(batch, action_is_pad=pad), noise=noise, time=t)
    torch.testing.assert_close(masked, full[:, :-1].mean())
    with pytest.raises(ValueError, match=r"\(B, 4, 6\)"):
        model.compute_loss(dict(batch, action=batch["action"][:, :3]))


def test_flow_loss_falls_and_samples_approach_the_data():
    model, batch = _ready(chunk=4)
    g = torch.Generator().manual_seed(0)
    eval_noise = torch.randn(8, 3, 4, NUM_JOINTS, generator=g)
    eval_t = torch.rand(8, 3, generator=g)

    def eval_loss():
        with torch.no_grad():
            return sum(model.compute_loss(batch, noise=n, time=t) for n, t in zip(eval_noise, eval_t)).item() / 8

    def sample_err():
        target = model.action_normalizer.normalize(batch["action"])
        got = model.action_normalizer.normalize(model.sample_actions(batch, noise=torch.randn(3, 4, 6, generator=g)))
        return (got - target).pow(2).mean().item()

    before, err_before = eval_loss(), sample_err()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(300):
        loss = model.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, err_after = eval_loss(), sample_err()
    print(f"flow loss {before:.3f} -> {after:.3f}; sample mse {err_before:.3f} -> {err_after:.3f}")
    assert after < 0.3 * before, (before, after)
    assert err_after < 0.3 * err_before, (err_before, err_after)


def test_policy_wrapper_queues_chunks():
    import numpy as np

    from vla_course.models import Pi0Policy

    model, batch = _ready(chunk=4)
    policy = Pi0Policy(model, n_action_steps=2, seed=0)
    frame = {k: (v[0].numpy() if torch.is_tensor(v) else v[0]) for k, v in batch.items() if k != "action"}
    calls = []
    original = model.sample_actions
    model.sample_actions = lambda *a, **kw: calls.append(1) or original(*a, **kw)
    acts = [policy.act(frame) for _ in range(5)]
    assert len(calls) == 3 and all(a.shape == (NUM_JOINTS,) and a.dtype == np.float32 for a in acts)
    policy.reset()
    again = [policy.act(frame) for _ in range(5)]
    np.testing.assert_allclose(np.stack(acts), np.stack(again), rtol=1e-5, atol=1e-4)  # seeded noise
