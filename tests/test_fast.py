"""FAST action tokens: the DCT, the error bound of the scale, frequency-major order, BPE, relaxed decoding,
one-file save/load, and FAST tokens as words of a TinyVLM (the answer block of the KI layout)."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import scipy.fft
import torch

from vla_course.models.fast import (FASTTokenizer, add_fast_words, alphabet_size, dct, fast_answer_ids,
                                    fast_tokens_from_ids, idct, max_symbol, resample_actions, sliding_chunks)
from vla_course.models.synthetic import random_pi0_batch, stats_from_batch, tiny_pi0

H, D = 16, 6


def smooth_chunks(n=200, h=H, seed=0):
    """Chunks (n, h, 6) in degree-like units: a few low-frequency sines per joint (what an arm does)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, h)[None, :, None]
    amp = rng.uniform(5, 40, (n, 1, D))
    freq, phase = rng.uniform(0.5, 3, (n, 1, D)), rng.uniform(0, 6, (n, 1, D))
    out = rng.uniform(-60, 60, (n, 1, D)) + amp * np.sin(freq * t + phase)
    return out + 0.5 * amp * np.sin(rng.uniform(3, 6, (n, 1, D)) * t)


@pytest.fixture(scope="module")
def fitted():
    chunks = smooth_chunks()
    return FASTTokenizer.fit(chunks, scale=10, vocab_size=512), chunks


def test_dct_matrix_is_orthonormal_and_the_round_trip_is_exact_before_rounding():
    m = dct(np.eye(H), axis=0)  # column t = the DCT of a unit impulse at t: the DCT-II matrix
    np.testing.assert_allclose(m @ m.T, np.eye(H), atol=1e-12)
    k, t = np.arange(H)[:, None], np.arange(H)[None, :]
    mine = np.where(k == 0, math.sqrt(1 / H), math.sqrt(2 / H)) * np.cos(np.pi * (t + 0.5) * k / H)
    np.testing.assert_allclose(m, mine, atol=1e-12)
    x = np.random.default_rng(1).normal(size=(5, H, D))
    np.testing.assert_allclose(dct(x), scipy.fft.dct(x, axis=1, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(idct(dct(x)), x, atol=1e-12)
    tok = FASTTokenizer(x.reshape(-1, D).min(0), x.reshape(-1, D).max(0), 1e9, None, H, D, clip=10)
    np.testing.assert_allclose(tok.unnormalize(tok.normalize(x)), x, atol=1e-12)


@pytest.mark.parametrize("scale", [5, 10, 40])
def test_encode_decode_error_is_bounded_by_the_scale(scale):
    chunks = smooth_chunks(100, seed=2)
    tok = FASTTokenizer.fit(chunks, scale=scale, vocab_size=max(512, alphabet_size(scale, H) + 64))
    half = (tok.high - tok.low) / 2  # one normalised unit in data units, per joint
    rec = np.stack([tok.decode(tok.encode(c)) for c in chunks])
    err = (rec - chunks) / half  # normalised units
    assert tok.decode_failures == 0 and tok.encode_clipped == 0
    # every coefficient is off by at most 0.5/scale; orthonormal DCT: the per-joint RMS over time is too
    assert np.sqrt((err ** 2).mean(1)).max() <= 0.5 / scale + 1e-6
    assert np.abs(err).max() <= math.sqrt(2 * H) * 0.5 / scale + 1e-6
    # BPE is lossless: decoding the tokens gives exactly what the rounded symbols give
    np.testing.assert_allclose(rec, tok.from_symbols(tok.symbols(chunks)), atol=1e-4)


def test_a_finer_scale_costs_more_tokens_and_gives_less_error():
    chunks = smooth_chunks(150, seed=3)
    out = []
    for scale in (2, 10, 50):
        tok = FASTTokenizer.fit(chunks, scale=scale, vocab_size=max(512, alphabet_size(scale, H) + 128))
        toks = [tok.encode(c) for c in chunks]
        rec = np.stack([tok.decode(t) for t in toks])
        out.append((np.mean([len(t) for t in toks]), np.sqrt(((rec - chunks) ** 2).mean())))
    (n1, e1), (n2, e2), (n3, e3) = out
    assert n1 < n2 < n3 and e1 > e2 > e3


def test_symbols_are_frequency_major(fitted):
    tok, chunks = fitted
    c = chunks[0]
    s = tok.symbols(c)
    coeffs = np.around(dct(tok.normalize(c)) * tok.scale)  # (H frequencies, D joints)
    np.testing.assert_array_equal(s[:D], coeffs[0])  # the lowest frequency of every joint first
    np.testing.assert_array_equal(s[D:2 * D], coeffs[1])
    np.testing.assert_array_equal(s, coeffs.reshape(-1))
    still = np.tile(c[:1], (H, 1))  # a chunk that does not move: only its D lowest-frequency symbols are non-zero
    assert np.all(tok.symbols(still)[D:] == 0) and np.any(tok.symbols(still)[:D] != 0)


def test_fast_compresses_smooth_chunks_better_than_naive_binning(fitted):
    tok, _ = fitted
    held_out = smooth_chunks(100, seed=7)
    per_chunk = np.mean([len(tok.encode(c)) for c in held_out])
    assert per_chunk * 3 <= H * D  # naive binning: one word per step per joint


def test_relaxed_decoding_returns_the_shape_and_counts_every_repair(fitted):
    tok, chunks = fitted
    tokens = tok.encode(chunks[1])
    good = tok.decode(tokens)
    assert tok.decode_failures == 0
    cases = [tokens[: max(1, len(tokens) // 2)], tokens * 3, [], [-5, 10 ** 9, tok.vocab_size, 3.5, "x", None],
             tokens + [-1], np.array(tokens), torch.tensor(tokens)[None], "not a list", None]
    for k, case in enumerate(cases):
        out = tok.decode(case)
        assert out.shape == (H, D) and out.dtype == np.float32 and np.isfinite(out).all(), case
    valid = {5, 6}  # the numpy array and the tensor are well-formed token lists
    assert tok.decode_failures == len(cases) - len(valid)
    np.testing.assert_array_equal(tok.decode(np.array(tokens)), good)
    assert tok.decode(tokens, horizon=8).shape == (8, D)  # another horizon: too many symbols, cut and counted
    # a truncated list keeps the lowest frequencies: it is a smoothed version of the chunk, not garbage
    trunc = tok.decode(tokens[: len(tokens) // 2])
    mid = (tok.high + tok.low) / 2
    assert np.abs(trunc - good).mean() < np.abs(mid - good).mean()


def test_save_load_round_trip_gives_identical_tokens(fitted, tmp_path):
    tok, chunks = fitted
    tok.metadata["command"] = "python benchmarks/fast_tokens.py --fit out.json"
    path = tok.save(tmp_path / "sub" / "fast.json")
    again = FASTTokenizer.load(path)
    for c in chunks[:20]:
        assert again.encode(c) == tok.encode(c)
        np.testing.assert_array_equal(again.decode(tok.encode(c)), tok.decode(tok.encode(c)))
    assert again.vocab_size == tok.vocab_size and again.merges() == tok.merges()
    assert again.metadata["command"] == tok.metadata["command"]
    d = json.loads(path.read_text())
    assert d["scale"] == 10 and d["horizon"] == H and len(d["low"]) == D
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a FAST tokenizer"):
        FASTTokenizer.load(tmp_path / "bad.json")


def test_fitting_is_deterministic_and_the_first_merge_is_the_most_frequent_pair(fitted):
    tok, chunks = fitted
    again = FASTTokenizer.fit(chunks, scale=10, vocab_size=512)
    assert again.merges() == tok.merges()
    pairs = Counter()
    for row in tok.symbols(chunks):
        pairs.update(zip(row[:-1].tolist(), row[1:].tolist()))
    (a,), (b,) = tok.merges()[0]
    assert pairs[a, b] == max(pairs.values())


def test_the_alphabet_bounds_every_symbol_and_clipping_is_counted():
    assert max_symbol(10, 16, 2.0) == 10 * 2 * 4 and alphabet_size(10, 16) == 161  # scale * clip * sqrt(H)
    chunks = smooth_chunks(50, seed=4)
    tok = FASTTokenizer.fit(chunks, scale=10, vocab_size=512)
    rng = np.random.default_rng(0)
    worst = [np.full((H, D), 1.999), np.where(np.cos(np.pi * (np.arange(H) + 0.5) / H) > 0, 1.999, -1.999)[:, None]
             * np.ones(D), rng.choice([-1.999, 1.999], (200, H, D))]  # still, the k=1 wave, random signs
    for x in worst:
        assert np.abs(tok.symbols(tok.unnormalize(x))).max() <= tok.max_symbol
    assert np.abs(tok.symbols(tok.unnormalize(worst[0]))).max() == tok.max_symbol  # the bound is reached
    assert tok.encode_clipped == 0
    tok.decode(tok.encode(tok.unnormalize(worst[0] * 10)))
    assert tok.encode_clipped > 0  # far outside the quantiles: clipped to +-clip, and counted
    with pytest.raises(ValueError, match="alphabet"):
        FASTTokenizer.fit(chunks, scale=100, vocab_size=1024)


def test_resampling_and_sliding_chunks():
    ep = smooth_chunks(1, h=40)[0]
    np.testing.assert_allclose(resample_actions(ep, 1), ep, atol=1e-4)
    up = resample_actions(ep, 4)
    assert up.shape == (4 * 39 + 1, D)
    np.testing.assert_allclose(up[::4], ep, atol=1e-4)  # the recorded steps stay where they were
    assert sliding_chunks(ep, 16).shape == (25, 16, D) and sliding_chunks(ep, 16, 16).shape == (2, 16, D)
    assert sliding_chunks(ep, 50).shape == (0, 50, D)


def test_fast_words_in_a_vlm_and_answer_ids_for_the_ki_layout(fitted):
    tok, chunks = fitted
    model = tiny_pi0(chunk_size=H, layout="knowledge_insulation", knowledge_insulation=True)
    vlm = model.vlm
    before = len(vlm.tokenizer)
    ids = add_fast_words(vlm, tok)
    assert ids == list(range(before, before + tok.vocab_size))
    assert vlm.embed.num_embeddings == len(vlm.tokenizer) == before + tok.vocab_size
    assert vlm.tokenizer.id_to_word[ids[7]] == "fast_7"
    assert add_fast_words(vlm, tok) == ids  # adding them again changes nothing

    batch = random_pi0_batch(3, H, seed=1)
    model.set_normalization_stats(stats_from_batch(batch))
    answer_ids, answer_pad = fast_answer_ids(tok, batch["action"].numpy(), ids, pad_id=vlm.tokenizer.pad_id)
    lengths = answer_pad.sum(1).tolist()
    assert answer_ids.shape == (3, max(lengths))
    for row, n, c in zip(answer_ids, lengths, batch["action"].numpy()):
        assert fast_tokens_from_ids(row[:n], ids) == tok.encode(c)
        assert (row[n:] == vlm.tokenizer.pad_id).all()
    losses = model.compute_loss(dict(batch, answer_ids=answer_ids, answer_pad=answer_pad))
    assert set(losses) == {"loss", "flow", "fast"} and torch.isfinite(losses["fast"])

    # what the backbone writes comes back as FAST tokens: <eos> ends it, a non-FAST word is skipped and counted
    eos = vlm.tokenizer.eos_id
    first = tok.encode(chunks[0])
    written = [ids[k] for k in first] + [eos, ids[0]]
    assert fast_tokens_from_ids(written, ids, eos_id=eos) == first
    failures = tok.decode_failures
    assert tok.decode(fast_tokens_from_ids([vlm.tokenizer.word_to_id["red"]] + written, ids, eos)).shape == (H, D)
    assert tok.decode_failures == failures + 1


def test_pi0_makes_its_fast_targets_from_the_batchs_own_chunk(fitted, tmp_path):
    """With a FAST tokenizer attached, any pi0 batch (images, state, task, action) trains the KI layout: the
    targets are the batch's relative chunk, encoded; they travel with the checkpoint; max_fast_tokens cuts."""
    from vla_course.models import Pi0
    from vla_course.models.relative import to_relative

    tok, _ = fitted
    model = tiny_pi0(chunk_size=H, layout="knowledge_insulation", knowledge_insulation=True,
                     delta_mask=(True,) * 5 + (False,))
    batch = random_pi0_batch(4, H, seed=3)
    model.set_normalization_stats(stats_from_batch(batch))
    ids = model.set_fast_tokenizer(tok)
    rel = to_relative(batch["action"], batch["observation.state"], model.config.delta_mask).numpy()
    want_ids, want_pad = fast_answer_ids(tok, rel, ids, model.vlm.tokenizer.pad_id)
    got_ids, got_pad = model.fast_targets(batch)
    assert torch.equal(got_ids, want_ids) and torch.equal(got_pad, want_pad)
    torch.manual_seed(0)
    implicit = model.compute_loss(batch)
    torch.manual_seed(0)
    explicit = model.compute_loss(dict(batch, answer_ids=want_ids, answer_pad=want_pad))
    assert set(implicit) == {"loss", "flow", "fast"}
    torch.testing.assert_close(implicit["fast"], explicit["fast"])

    model.save_pretrained(tmp_path)
    assert (tmp_path / "fast_tokenizer.json").is_file()
    back = Pi0.from_pretrained(tmp_path)
    assert back.fast_word_ids == ids and back.fast_tokenizer.encode(rel[0]) == tok.encode(rel[0])
    torch.manual_seed(0)
    torch.testing.assert_close(back.compute_loss(batch)["fast"], implicit["fast"])

    longest = int(want_pad.sum(1).max())
    model.config.max_fast_tokens = max(1, longest - 2)
    cut_ids, cut_pad = model.fast_targets(batch)
    assert cut_ids.shape[1] == longest - 2 and torch.equal(cut_ids, want_ids[:, : longest - 2])
    with pytest.raises(ValueError, match="fitted on"):
        tiny_pi0(chunk_size=H + 1, layout="knowledge_insulation").set_fast_tokenizer(tok)
