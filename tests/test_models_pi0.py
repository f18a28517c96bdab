"""The VLA core (Pi0): blocks and layouts, the dict of losses, knowledge insulation, relative actions,
normalisation, cached sampling, overfitting, strict checkpoints."""

import json

import pytest
import torch

from vla_course.constants import NUM_JOINTS
from vla_course.models import Pi0, Pi0Config, TinyVLM, VLMConfig, count_parameters
from vla_course.models.synthetic import (course_tokenizer, random_pi0_batch, random_vqa_batch, stats_from_batch,
                                         tiny_pi0)

DELTA = (True, True, True, True, True, False)


def _ready(chunk=4, **kw):
    model = tiny_pi0(chunk_size=chunk, **kw)
    batch = random_pi0_batch(3, chunk, seed=1)
    model.set_normalization_stats(stats_from_batch(batch))
    return model, batch


def _answers(model, batch, texts=("red", "left", "the blue cube")):
    return dict(batch, answer=list(texts))


def test_default_model_shapes_and_parameter_counts():
    torch.manual_seed(0)
    model = Pi0(TinyVLM(course_tokenizer(), VLMConfig()), Pi0Config())
    assert model.config.chunk_size == 16
    batch = random_pi0_batch(2, 16)
    model.set_normalization_stats(stats_from_batch(batch))
    losses = model.compute_loss(batch)
    assert set(losses) == {"loss", "flow"} and losses["loss"].ndim == 0
    torch.testing.assert_close(losses["loss"], losses["flow"])  # plain pi0: the total is the flow loss
    per_sample = model.compute_loss(batch, reduction="none")
    assert per_sample["flow"].shape == per_sample["loss"].shape == (2,)
    assert model.sample_actions(batch).shape == (2, 16, NUM_JOINTS)
    c = count_parameters(model)
    assert c["total"] == sum(p.numel() for p in model.parameters())
    assert c["total"] == sum(v for k, v in c.items() if k != "total")
    assert c["action_expert"] < c["backbone"] / 2  # narrower expert, same depth/heads
    assert 300_000 < c["total"] < 1_000_000
    e, b = model.action_expert.layers[0], model.vlm.backbone.layers[0]
    assert e.qkv.weight.shape[0] == b.qkv.weight.shape[0] and e.qkv.weight.shape[1] == b.qkv.weight.shape[1] // 2


def test_per_sample_losses_average_to_the_batch_loss_and_follow_each_sample():
    model, batch = _ready()
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.rand(3)
    mean = model.compute_loss(batch, noise=noise, time=t)["flow"]
    each = model.compute_loss(batch, noise=noise, time=t, reduction="none")["flow"]
    torch.testing.assert_close(each.mean(), mean)  # equal counts per sample, no padding
    noisier = noise.clone()
    noisier[1] += 3.0  # only sample 1 changes
    other = model.compute_loss(batch, noise=noisier, time=t, reduction="none")["flow"]
    torch.testing.assert_close(other[[0, 2]], each[[0, 2]])
    assert not torch.isclose(other[1], each[1])


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


@pytest.mark.parametrize("insulated", [False, True])
def test_knowledge_insulation_gradient_probe(insulated):
    """The flow loss's gradient in the backbone is exactly 0 with knowledge insulation and > 0 without;
    the expert always learns; the switch never changes the loss value."""
    model, batch = _ready(knowledge_insulation=insulated)
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.full((3,), 0.5)
    loss = model.compute_loss(batch, noise=noise, time=t)["flow"]
    loss.backward()
    vlm_grads = [p.grad for p in model.vlm.parameters()]
    other = {n: p.grad for n, p in model.named_parameters() if not n.startswith("vlm.")}
    assert all(g is not None and g.abs().max() > 0 for g in other.values()), "expert must always learn"
    backbone_norm = sum(float(g.norm()) for g in vlm_grads if g is not None)
    if insulated:
        assert backbone_norm == 0.0
    else:
        assert model.vlm.backbone.layers[0].qkv.weight.grad.abs().max() > 0
        assert model.vlm.vision.stem[0].weight.grad.abs().max() > 0
        assert model.vlm.embed.weight.grad.abs().max() > 0
    model.config.knowledge_insulation = not insulated
    torch.testing.assert_close(model.compute_loss(batch, noise=noise, time=t)["flow"], loss)


def test_ki_layout_fast_tokens_train_the_backbone_and_stay_hidden_from_the_expert():
    model, batch = _ready(layout="knowledge_insulation", knowledge_insulation=True)
    ids = torch.tensor([[5, 6, 7], [8, 9, 0], [5, 5, 5]])
    pad = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    fast = dict(batch, answer_ids=ids, answer_pad=pad)
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.rand(3)
    out = model.compute_loss(fast, noise=noise, time=t)
    assert set(out) == {"loss", "flow", "fast"}
    torch.testing.assert_close(out["loss"], out["flow"] + model.config.text_weight * out["fast"])
    # the action expert does not see the FAST tokens: other tokens, the same flow loss and the same actions
    other = dict(fast, answer_ids=(ids + 3) % 10)
    torch.testing.assert_close(model.compute_loss(other, noise=noise, time=t)["flow"], out["flow"])
    torch.testing.assert_close(model.sample_actions(other, noise=noise), model.sample_actions(fast, noise=noise))
    # the FAST cross-entropy trains the backbone; the flow loss does not (stop-gradient)
    out["fast"].backward()
    assert model.vlm.backbone.layers[0].qkv.weight.grad.abs().max() > 0
    model.zero_grad(set_to_none=True)
    model.compute_loss(fast, noise=noise, time=t)["flow"].backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.vlm.parameters())


def test_subtask_layout_the_actions_act_on_the_subtask():
    model, batch = _ready(layout="subtask")
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.rand(3)
    a = _answers(model, batch)
    b = _answers(model, batch, ("left", "red", "three"))
    out = model.compute_loss(a, noise=noise, time=t)
    assert set(out) == {"loss", "flow", "text"}
    assert not torch.isclose(out["flow"], model.compute_loss(b, noise=noise, time=t)["flow"])
    fast, slow = model.sample_actions(a, noise=noise), model.sample_actions(a, noise=noise, use_cache=False)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(fast, model.sample_actions(b, noise=noise))
    # the text loss is the backbone's teacher-forced cross-entropy on the subtask words (and <eos>)
    assert out["text"] > 0 and torch.isfinite(out["text"])


def test_subtask_as_prompt_thinks_in_one_sequence_and_acts_in_another():
    """pi0.5 in two sequences (models/subtask.py): the text loss is the VLM answering the prompt with the
    subtask; the actions are pi0's on the frame whose instruction *is* the subtask."""
    from vla_course.models.subtask import high_level_batch, low_level_batch

    model, batch = _ready(layout="subtask", subtask_as_prompt=True)
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.rand(3)
    a = _answers(model, batch)
    out = model.compute_loss(a, noise=noise, time=t)
    assert set(out) == {"loss", "flow", "text"}
    high, low = high_level_batch(a), low_level_batch(a)
    assert high["prompt"] == batch["task"] and "action" not in high and low["task"] == list(a["answer"])
    torch.testing.assert_close(out["text"], model.vlm.compute_loss(high))
    torch.testing.assert_close(out["flow"], model.compute_loss(low, noise=noise, time=t)["flow"])
    torch.testing.assert_close(out["loss"], out["flow"] + model.config.text_weight * out["text"])
    # acting on the words = acting with the words as the instruction; the high-level prompt is not seen
    acted = model.sample_actions(a, noise=noise)
    torch.testing.assert_close(acted, model.sample_actions(low, noise=noise))
    torch.testing.assert_close(acted, model.sample_actions(dict(a, task=["x"] * 3), noise=noise))
    assert not torch.allclose(acted, model.sample_actions(_answers(model, batch, ("left", "red", "three")),
                                                          noise=noise))
    # the recorded label works as the subtask too (a training batch carries "subtask")
    labelled = dict(batch, subtask=list(a["answer"]))
    torch.testing.assert_close(model.compute_loss(labelled, noise=noise, time=t)["loss"], out["loss"])
    with pytest.raises(ValueError, match="subtask_as_prompt"):
        Pi0Config(subtask_as_prompt=True)  # the pi0 layout has no subtask to read
    with pytest.raises(ValueError, match="subtask_words"):
        Pi0Config(subtask_words="sentences")


def test_a_batch_without_actions_trains_only_the_backbones_text_loss():
    model, _ = _ready()
    vqa = random_vqa_batch(4)
    out = model.compute_loss(vqa)
    assert set(out) == {"loss", "text"}
    torch.testing.assert_close(out["text"], model.vlm.compute_loss(vqa))
    out["loss"].backward()
    assert model.action_expert.layers[0].qkv.weight.grad is None  # the expert is not involved


def test_relative_actions_live_in_the_model_and_come_back_absolute():
    model, batch = _ready(delta_mask=DELTA)
    state = batch["observation.state"]
    m = torch.tensor(DELTA, dtype=torch.float32)
    rel = batch["action"] - state[:, None] * m
    # stats of the chunks as the model predicts them (relative)
    model.set_normalization_stats({"observation.state": stats_from_batch(batch)["observation.state"],
                                   "action": stats_from_batch({"observation.state": state, "action": rel})["action"]})
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.rand(3)
    absolute = model.compute_loss(batch, noise=noise, time=t)["flow"]
    # the same model with absolute actions, fed the relative chunk by hand, computes the same loss
    model.config.delta_mask = None
    torch.testing.assert_close(model.compute_loss(dict(batch, action=rel), noise=noise, time=t)["flow"], absolute)
    rel_out = model.sample_actions(batch, noise=noise)
    model.config.delta_mask = DELTA
    abs_out = model.sample_actions(batch, noise=noise)
    torch.testing.assert_close(abs_out, rel_out + state[:, None] * m)
    with pytest.raises(ValueError, match="delta_mask needs 6"):
        Pi0Config(delta_mask=(True, False))


def test_discrete_state_goes_into_the_prefix_as_words():
    model, batch = _ready(discrete_state_bins=16)
    assert "state_0" in model.vlm.tokenizer and "state_15" in model.vlm.tokenizer
    plain, _ = _ready()
    with torch.no_grad():
        n_words = model.embed_prefix(batch)[0].shape[1] - plain.embed_prefix(batch)[0].shape[1]
    assert n_words == NUM_JOINTS  # one word per joint
    words = model.state_words(model.state_normalizer.normalize(batch["observation.state"]))
    assert len(words) == 3 and all(len(w) == NUM_JOINTS for w in words)
    assert words[0] != model.state_words(model.state_normalizer.normalize(batch["observation.state"] + 40))[0]
    noise = torch.randn(3, 4, NUM_JOINTS)
    torch.testing.assert_close(model.sample_actions(batch, noise=noise),
                               model.sample_actions(batch, noise=noise, use_cache=False), atol=1e-4, rtol=1e-4)


def test_normalisation_is_required_and_saved(tmp_path):
    model = tiny_pi0(delta_mask=DELTA)
    batch = random_pi0_batch(2, 4)
    with pytest.raises(RuntimeError, match="set_normalization_stats"):
        model.compute_loss(batch)
    model.set_normalization_stats(stats_from_batch(batch))
    assert "action_normalizer.mean" in model.state_dict() and "state_normalizer.std" in model.state_dict()
    noise = torch.randn(2, 4, NUM_JOINTS)
    before = model.sample_actions(batch, noise=noise)
    model.save_pretrained(tmp_path)
    again = Pi0.from_pretrained(tmp_path)
    assert again.config.delta_mask == DELTA and again.config.n_action_steps == model.config.n_action_steps
    torch.testing.assert_close(again.action_normalizer.mean, model.action_normalizer.mean)
    torch.testing.assert_close(again.sample_actions(batch, noise=noise), before)
    assert before.abs().mean() > 5.0  # actions come out in the data's units (degrees), not normalised units


def test_quantile_normalisation_maps_the_1st_and_99th_percentiles_to_minus_and_plus_one():
    torch.manual_seed(0)
    cfg = dict(chunk_size=4, expert_width=16, expert_mlp_dim=32, n_action_steps=2)
    vlm = TinyVLM(course_tokenizer(), tiny_pi0().vlm.config)
    model = Pi0(vlm, Pi0Config(normalization="quantile", **cfg))
    batch = random_pi0_batch(64, 4)
    stats = stats_from_batch(batch)
    model.set_normalization_stats(stats)
    a = stats["action"]
    torch.testing.assert_close(model.action_normalizer.normalize(a["q01"]), -torch.ones(NUM_JOINTS))
    torch.testing.assert_close(model.action_normalizer.normalize(a["q99"]), torch.ones(NUM_JOINTS))
    inside = (model.action_normalizer.normalize(batch["action"]).abs() <= 1).float().mean()
    assert 0.9 < float(inside) < 1.0  # about 98% of the values land in [-1, 1], the tails outside
    # and the model trains on those units: the same weights under mean/std normalisation give another loss
    other = Pi0(vlm, Pi0Config(normalization="mean_std", **cfg))
    other.load_state_dict(model.state_dict(), strict=False)
    other.set_normalization_stats(stats)
    noise, t = torch.randn(64, 4, NUM_JOINTS), torch.rand(64)
    assert not torch.isclose(model.compute_loss(batch, noise=noise, time=t)["flow"],
                             other.compute_loss(batch, noise=noise, time=t)["flow"])


def test_action_padding_and_shape_errors():
    model, batch = _ready()
    noise, t = torch.randn(3, 4, NUM_JOINTS), torch.rand(3)
    pad = torch.zeros(3, 4, dtype=torch.bool)
    pad[:, -1] = True
    masked = model.compute_loss(dict(batch, action_is_pad=pad), noise=noise, time=t)["flow"]
    # Change the padded step's target but not the model's input: move its action by d and its noise so that
    # x_t = t * noise + (1 - t) * a stays put. Only u = noise - a changes, and only in the padded step.
    changed = dict(batch, action_is_pad=pad, action=batch["action"].clone())
    changed["action"][:, -1] += 100.0
    scale = model.action_normalizer._shift_scale()[1]
    noise2 = noise.clone()
    noise2[:, -1] -= ((1 - t) / t)[:, None] * (100.0 / scale)
    torch.testing.assert_close(model.compute_loss(changed, noise=noise2, time=t)["flow"], masked)
    unmasked = model.compute_loss(dict(batch, action=changed["action"]), noise=noise2, time=t)["flow"]
    assert unmasked > 10 * masked
    with pytest.raises(ValueError, match=r"\(B, 4, 6\)"):
        model.compute_loss(dict(batch, action=batch["action"][:, :3]))


def test_flow_loss_falls_and_samples_approach_the_data():
    model, batch = _ready(chunk=4)
    g = torch.Generator().manual_seed(0)
    eval_noise = torch.randn(8, 3, 4, NUM_JOINTS, generator=g)
    eval_t = torch.rand(8, 3, generator=g)

    def eval_loss():
        with torch.no_grad():
            return sum(model.compute_loss(batch, noise=n, time=t)["loss"] for n, t in zip(eval_noise, eval_t)).item() / 8

    def sample_err():
        target = model.action_normalizer.normalize(batch["action"])
        got = model.action_normalizer.normalize(model.sample_actions(batch, noise=torch.randn(3, 4, 6, generator=g)))
        return (got - target).pow(2).mean().item()

    before, err_before = eval_loss(), sample_err()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(300):
        loss = model.compute_loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, err_after = eval_loss(), sample_err()
    assert after < 0.3 * before, (before, after)
    assert err_after < 0.3 * err_before, (err_before, err_after)


def test_policy_wrapper_queues_chunks_and_defaults_to_the_models_horizon():
    import numpy as np

    from vla_course.models import Pi0Policy

    model, batch = _ready(chunk=4, n_action_steps=2)
    policy = Pi0Policy(model, seed=0)
    assert policy.n_action_steps == 2
    frame = {k: (v[0].numpy() if torch.is_tensor(v) else v[0]) for k, v in batch.items() if k != "action"}
    calls = []
    original = model.sample_actions
    model.sample_actions = lambda *a, **kw: calls.append(1) or original(*a, **kw)
    acts = [policy.act(frame) for _ in range(5)]
    assert len(calls) == 3 and all(a.shape == (NUM_JOINTS,) and a.dtype == np.float32 for a in acts)
    policy.reset()
    again = [policy.act(frame) for _ in range(5)]
    np.testing.assert_allclose(np.stack(acts), np.stack(again), rtol=1e-5, atol=1e-4)  # seeded noise


# ---- strict checkpoints ----------------------------------------------------------------------------------
def _saved(tmp_path):
    model, _ = _ready(delta_mask=DELTA)
    model.save_pretrained(tmp_path)
    return json.loads((tmp_path / "config.json").read_text())


def test_a_config_without_relative_actions_is_an_error_that_names_the_fix(tmp_path):
    cfg = _saved(tmp_path)
    del cfg["pi0"]["delta_mask"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="delta_mask") as e:
        Pi0.from_pretrained(tmp_path)
    assert "\n" not in str(e.value) and "re-make" in str(e.value)


def test_old_config_names_are_migrated(tmp_path):
    cfg = _saved(tmp_path)
    cfg["pi0"]["action_loss_to_backbone"] = False
    del cfg["pi0"]["knowledge_insulation"]
    cfg["vlm"]["query_keypoints"] = cfg["vlm"].pop("instruction_keypoints")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert Pi0.from_pretrained(tmp_path).config.knowledge_insulation is True


@pytest.mark.parametrize("field,value", [("chunk_size", "16"), ("delta_mask", [1, 0]), ("layout", "pi05"),
                                         ("knowledge_insulation", "yes"), ("warp_speed", 9)])
def test_a_wrongly_typed_or_unknown_setting_is_one_line(tmp_path, field, value):
    cfg = _saved(tmp_path)
    cfg["pi0"][field] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as e:
        Pi0.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)
    assert field in str(e.value) or "layout" in str(e.value) or "delta_mask" in str(e.value)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_broken_weights_are_one_line(tmp_path, damage):
    _saved(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"not a model" * 50}[damage])
    with pytest.raises(ValueError, match="model.safetensors") as e:
        Pi0.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)


def test_a_config_that_is_not_json_is_one_line(tmp_path):
    _saved(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Pi0.from_pretrained(tmp_path)


@pytest.mark.parametrize("bins", [0, 8])
def test_decode_subtask_writes_what_the_text_loss_was_trained_on(bins):
    """Overfit one subtask per row, then greedy decoding from the same prefix writes exactly those words."""
    torch.manual_seed(0)
    model, batch = _ready(layout="subtask", discrete_state_bins=bins)
    texts = ["pick up the red cube", "put the cube", "pick up the blue cube"]  # words of the test vocabulary
    a = dict(batch, answer=texts)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        model.compute_loss(a)["text"].backward()
        opt.step()
    model.eval()
    assert model.decode_subtask(batch) == texts
    if bins:  # the state words are part of what the high level reads
        moved = dict(batch, **{"observation.state": batch["observation.state"] + 40.0})
        assert model.state_words(model.state_normalizer.normalize(moved["observation.state"])) != \
            model.state_words(model.state_normalizer.normalize(batch["observation.state"]))
    plain, _ = _ready()
    with pytest.raises(ValueError, match="subtask"):
        plain.decode_subtask(batch)


def test_pi05_policy_thinks_then_acts_on_its_words():
    from vla_course.models import Pi0Policy

    model, batch = _ready(layout="subtask")
    frame = {k: (v[0] if k != "task" else v[0]) for k, v in batch.items()}
    said = {"n": 0}
    real = model.decode_subtask

    def decode(b, **kw):  # count the decodes, and return a text that changes on the 3rd
        said["n"] += 1
        return ["put the cube"] if said["n"] >= 3 else real(b, **kw)

    model.decode_subtask = decode
    pol = Pi0Policy(model, n_action_steps=2, seed=0)
    acts = [pol.act(frame) for _ in range(4)]
    assert said["n"] == 2 and [s for s, _ in pol.thoughts] == [0, 2]  # once per chunk
    # the actions are what the expert makes of the thought: the same noise and words give the same chunk
    noise = torch.randn(1, 4, NUM_JOINTS, generator=torch.Generator().manual_seed(0))
    b0 = dict(pol.frame_to_batch(frame), answer=[pol.thoughts[0][1]])
    torch.testing.assert_close(torch.as_tensor(acts[0]), model.sample_actions(b0, noise=noise)[0, 0])
    # think_every=1: a decode at every step; a changed text drops the rest of the queued chunk
    said["n"] = 0
    pol = Pi0Policy(model, n_action_steps=4, seed=0, think_every=1)
    for _ in range(4):
        pol.act(frame)
    assert said["n"] == 4 and pol.subtask == "put the cube"
    assert len(pol.queue) == 2  # a fresh chunk at step 2 (the words changed), of which steps 2, 3 ran
    with pytest.raises(ValueError, match="think_every"):
        Pi0Policy(_ready()[0], think_every=2)


def test_classifier_free_guidance_mixes_the_conditioned_and_bare_velocities():
    model, batch = _ready()
    b = {k: (v[:1] if torch.is_tensor(v) else v[:1]) for k, v in batch.items()}
    cond, bare = dict(b, task=["put the red cube in the bin advantage: positive"]), dict(b, task=["put the red cube in the bin"])
    both = {k: (torch.cat([cond[k], bare[k]]) if torch.is_tensor(cond[k]) else cond[k] + bare[k]) for k in cond}
    noise = torch.randn(1, 4, NUM_JOINTS)
    # beta = 1 is the conditioned policy, beta = 0 the unconditioned one; cached and uncached agree
    torch.testing.assert_close(model.sample_actions(both, noise=noise, guidance=1.0),
                               model.sample_actions(cond, noise=noise), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.sample_actions(both, noise=noise, guidance=0.0),
                               model.sample_actions(bare, noise=noise), atol=1e-5, rtol=1e-5)
    g2 = model.sample_actions(both, noise=noise, guidance=2.0)
    torch.testing.assert_close(g2, model.sample_actions(both, noise=noise, guidance=2.0, use_cache=False),
                               atol=1e-4, rtol=1e-4)
    assert g2.shape == (1, 4, NUM_JOINTS) and not torch.allclose(g2, model.sample_actions(cond, noise=noise))
    with pytest.raises(ValueError, match="2B rows"):
        model.sample_actions(cond, noise=noise, guidance=2.0)


def test_a_recap_policy_asks_for_positive_and_guides_against_the_bare_instruction():
    from vla_course.models import Pi0Policy

    model, batch = _ready()
    frame = {k: v[0] for k, v in batch.items()}
    noise = torch.randn(1, 4, NUM_JOINTS, generator=torch.Generator().manual_seed(0))
    plain = Pi0Policy(model, n_action_steps=2, seed=0)
    b = plain.frame_to_batch(frame)
    cond = dict(b, task=[b["task"][0] + " advantage: positive"])
    pol = Pi0Policy(model, n_action_steps=2, seed=0, condition="advantage: positive")
    torch.testing.assert_close(torch.as_tensor(pol.act(frame)), model.sample_actions(cond, noise=noise)[0, 0])
    guided = Pi0Policy(model, n_action_steps=2, seed=0, condition="advantage: positive", guidance=2.0)
    both = {k: (torch.cat([cond[k], b[k]]) if torch.is_tensor(b[k]) else cond[k] + b[k]) for k in b}
    torch.testing.assert_close(torch.as_tensor(guided.act(frame)),
                               model.sample_actions(both, noise=noise, guidance=2.0)[0, 0])
    with pytest.raises(ValueError, match="guidance needs a condition"):
        Pi0Policy(model, guidance=2.0)
