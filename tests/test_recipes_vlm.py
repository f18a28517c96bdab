"""The vlm_base recipe (quick budget), VQA evaluation, and chapter 01's actions-as-text tokenizer."""

import json

import numpy as np
import pytest
import torch

from vla_course.checkpoints import load_pretrained, read_metadata
from vla_course.constants import COLORS
from vla_course.data.vqa import QUESTION_KINDS, generate_vqa
from vla_course.eval_vqa import evaluate_vqa
from vla_course.models import TinyVLM
from vla_course.models.action_text import (ActionTextTokenizer, add_action_words, bin_actions,
                                           unbin_actions)
from vla_course.models.synthetic import course_tokenizer, random_vqa_batch, tiny_vlm_config
from vla_course.recipes.vlm import VLMRecipe, instruction_texts, lr_at
from vla_course.train import run_recipe


# ---- the recipe --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    out = run_recipe("vlm_base", seed=0, root=root, quick=True)
    return root, out


@pytest.mark.slow
def test_quick_recipe_writes_a_loadable_checkpoint_that_answers(quick_ckpt):
    root, out = quick_ckpt
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "metadata.json"}
    vlm = load_pretrained("vlm_base", kind="TinyVLM", root=root)
    assert isinstance(vlm, TinyVLM)
    held = generate_vqa(2, split="heldout", progress=False)
    answers = vlm.generate(held.batch([0, 1, 8]), max_new_tokens=6)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    # the tokenizer speaks the robot's instruction language too (pi0 reuses it)
    for text in instruction_texts():
        assert vlm.tokenizer.unk_id not in vlm.tokenizer.encode(text), text
    assert all(c in vlm.tokenizer for c in COLORS)


@pytest.mark.slow
def test_quick_recipe_metadata_records_heldout_accuracy_per_kind(quick_ckpt):
    root, _ = quick_ckpt
    meta = read_metadata("vlm_base", root=root)
    metrics = meta["metrics"]
    assert set(metrics["heldout_per_kind"]) == set(QUESTION_KINDS)
    assert 0.0 <= metrics["heldout_exact_match"] <= 1.0
    assert meta["train_seconds"] > 0 and meta["data"]["train_scenes"] > 0
    assert meta["parameters"]["total"] == sum(p.numel() for p in load_pretrained("vlm_base", root=root).parameters())
    json.dumps(meta)  # plain JSON


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="vla-course train vlm_base"):
        load_pretrained("vlm_base", root=tmp_path)


def test_shipped_results_are_read_by_name_and_say_the_weights_are_not_shipped():
    from vla_course.checkpoints import RESULTS_DIR, read_metadata
    from vla_course.train import discover

    from vla_course.checkpoints import checkpoint_dir

    names = sorted(p.stem for p in RESULTS_DIR.glob("*.json") if p.stem in discover())
    assert {"pi0_vqa", "pi0_frozen"} <= set(names)  # the KI chapter's baselines (notebook 06)
    names = [n for n in names if not checkpoint_dir(n).exists()]  # re-made locally: the checkpoint wins
    for name in names:
        meta = read_metadata(name)
        assert meta["recipe"] == name and meta["command"].startswith(f"vla-course train {name}")
        assert 0.0 <= meta["metrics"]["success_rate"] <= 1.0
        with pytest.raises(FileNotFoundError, match="only its results are shipped"):
            load_pretrained(name)


def test_lr_schedule_warms_up_then_decays_to_zero():
    final = VLMRecipe().train_config(0).final_lr_frac  # the VLM recipe decays to zero
    lrs = [lr_at(s, 100, 1e-3, 10, final) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 1e-5
    assert lr_at(99, 100, 1e-3, 10) == pytest.approx(1e-4, rel=1e-2)  # the default keeps 10% (pi0's recipes)


# ---- evaluation ---------------------------------------------------------------------------------
def test_evaluate_vqa_exact_match_overall_and_per_kind():
    ds = generate_vqa(2, split="heldout", image_size=48, progress=False)
    perfect = evaluate_vqa(None, ds, predictions=list(ds.answers))
    assert perfect["overall"] == 1.0 and set(perfect["per_kind"].values()) == {1.0}
    preds = list(ds.answers)
    cap = ds.kinds.index("caption")
    preds[cap] = " ".join(reversed(preds[cap].split())) + " extra"  # a wrong caption
    scores = evaluate_vqa(None, ds, predictions=preds)
    assert scores["per_kind"]["caption"] == 0.5 and scores["overall"] == pytest.approx(15 / 16)
    with pytest.raises(ValueError):
        evaluate_vqa(None, ds, predictions=preds[:-1])


# ---- actions as text ------------------------------------------------------------------------------
def test_binning_roundtrip_error_is_at_most_half_a_bin():
    rng = np.random.default_rng(0)
    low, high = np.array([-90.0, 0.0]), np.array([90.0, 100.0])
    a = rng.uniform(low, high, size=(500, 2))
    for n in (8, 256):
        bins = bin_actions(a, low, high, n)
        assert bins.min() >= 0 and bins.max() <= n - 1
        err = np.abs(unbin_actions(bins, low, high, n) - a)
        assert np.all(err <= (high - low) / n / 2 + 1e-4)
    assert bin_actions([[-1e3, 1e3]], low, high, 256).tolist() == [[0, 255]]  # out of range: clipped
    with pytest.raises(ValueError):
        bin_actions(a, high, low)


def test_action_text_encode_decode_and_token_count():
    chunk = np.random.default_rng(1).uniform(-50, 50, size=(16, 6))
    tok = ActionTextTokenizer.fit(chunk, num_bins=256)
    text = tok.encode(chunk)
    assert len(text.split()) == tok.tokens_per_chunk(16) == 96
    np.testing.assert_allclose(tok.decode(text), chunk, atol=float(tok.bin_width.max()) / 2 + 1e-4)
    with pytest.raises(ValueError):
        tok.decode("act_1 red")
    with pytest.raises(ValueError):
        tok.decode("act_1 act_2")  # not a whole step of 6 joints


def test_generate_is_the_one_decoder_for_answers_and_action_words():
    torch.manual_seed(0)
    vlm = TinyVLM(course_tokenizer(), tiny_vlm_config()).eval()
    batch = random_vqa_batch(3)
    texts, ids = vlm.generate(batch, max_new_tokens=6, return_ids=True)
    assert ids.shape[0] == 3 and ids.shape[1] <= 6
    assert [vlm.tokenizer.decode(r.tolist()) for r in ids] == texts
    tok = ActionTextTokenizer(low=[-1.0] * 6, high=[1.0] * 6, num_bins=16)
    words = add_action_words(vlm, tok)
    texts, out, cache = vlm.generate(batch, 12, allowed_ids=words, return_ids=True, return_cache=True)
    assert out.shape == (3, 12) and set(out.flatten().tolist()) <= set(words)  # no <eos> allowed: all 12 written
    assert cache.length == cache.pad_mask.shape[1] and torch.equal(cache.next_pos, cache.pad_mask.sum(1))
    chunks = [tok.decode(t) for t in texts]
    assert all(c.shape == (2, 6) for c in chunks)


def test_training_resumes_exactly_at_a_cycle_boundary(tmp_path):
    """metadata.json may record a run resumed between cosine cycles: it must equal an uninterrupted run."""
    from vla_course.recipes.vlm import build_tokenizer, run_cycles

    ds = generate_vqa(3, split="train", progress=False)
    cfg = VLMRecipe(steps=3, cycles=2, batch_size=4, lr=1e-3, warmup=1, weight_decay=0.01)
    torch.manual_seed(0)
    straight = TinyVLM(build_tokenizer(ds), tiny_vlm_config())
    resumed = TinyVLM(build_tokenizer(ds), tiny_vlm_config())
    resumed.load_state_dict(straight.state_dict())
    run_cycles(straight, ds, cfg, seed=0, cycles=range(2), progress=False)
    run_cycles(resumed, ds, cfg, seed=0, cycles=range(1), progress=False)
    resumed.save_pretrained(tmp_path)
    resumed = TinyVLM.from_pretrained(tmp_path)
    run_cycles(resumed, ds, cfg, seed=0, cycles=range(1, 2), progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_the_seed_is_honoured():
    """(The old ``rng`` argument of the VLM's loop was silently ignored; the loop now takes only the seed.)"""
    from vla_course.recipes.vlm import build_tokenizer, run_cycles

    ds = generate_vqa(3, split="train", progress=False)
    cfg = VLMRecipe(steps=3, cycles=1, batch_size=4, warmup=1)
    weights = {}
    for seed in (0, 0, 1):
        torch.manual_seed(0)
        vlm = TinyVLM(build_tokenizer(ds), tiny_vlm_config())
        run_cycles(vlm, ds, cfg, seed=seed, cycles=range(1), progress=False)
        weights.setdefault(seed, []).append(vlm.backbone.layers[0].qkv.weight.detach().clone())
    torch.testing.assert_close(weights[0][0], weights[0][1], rtol=0, atol=0)
    assert not torch.equal(weights[0][0], weights[1][0])
