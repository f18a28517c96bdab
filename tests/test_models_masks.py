"""Attention masks: our ar_mask semantics against LeRobot's copy of openpi's, and block layouts."""

import random

import pytest
import torch
from lerobot.policies.common.vla_utils import make_att_2d_masks as lerobot_make_att_2d_masks

from vla_course.models.masks import (LAYOUTS, BlockLayout, ascii_mask, block_mask, ki_layout, make_att_2d_masks,
                                     pi0_layout, prefix_lm_layout, subtask_layout, vla_layout)


def _random_layout(rng: random.Random) -> BlockLayout:
    blocks = []
    for i in range(rng.randint(1, 5)):
        blocks.append((f"b{i}", rng.randint(1, 6), rng.choice(["bidirectional", "causal"])))
    return BlockLayout(blocks)


def test_matches_lerobot_on_random_ar_masks_with_padding():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        b, n = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 20, (1,), generator=g))
        ar = torch.randint(0, 2, (b, n), generator=g)
        pad = torch.rand(b, n, generator=g) > 0.3
        ours = make_att_2d_masks(pad, ar)
        ref = lerobot_make_att_2d_masks(pad, ar.to(torch.int32))
        assert ours.dtype == torch.bool
        assert torch.equal(ours, ref)


def test_block_layouts_match_lerobot_with_padding():
    rng = random.Random(1)
    for _ in range(100):
        layout = _random_layout(rng)
        n, b = len(layout), rng.randint(1, 4)
        pad = torch.rand(b, n) > 0.25
        ar = layout.ar_mask()[None].expand(b, -1)
        ref = lerobot_make_att_2d_masks(pad, ar)
        assert torch.equal(make_att_2d_masks(pad, ar), ref)
        assert torch.equal(layout.mask(pad), ref), layout  # the general builder agrees too


def test_pi0_layout_structure():
    n_prefix, h = 7, 5
    layout = pi0_layout(n_prefix, h)
    sp = layout.spans()
    m = layout.mask()
    assert not m[sp["prefix"], sp["state"]].any() and not m[sp["prefix"], sp["actions"]].any()
    assert m[sp["prefix"], sp["prefix"]].all()  # bidirectional prefix
    assert m[sp["state"], sp["prefix"]].all() and not m[sp["state"], sp["actions"]].any()
    assert m[sp["actions"]].all()  # actions see everything, both ways among themselves
    assert layout.ar_mask().tolist() == [0] * n_prefix + [1] + [1] + [0] * (h - 1)


def test_prefix_lm_layout_is_causal_on_the_answer():
    m = prefix_lm_layout(3, 4).mask()
    assert m[:3, :3].all() and not m[:3, 3:].any()
    assert torch.equal(m[3:, 3:], torch.tril(torch.ones(4, 4, dtype=torch.bool)))


def test_ki_layout_hides_fast_tokens_from_the_expert():
    layout = ki_layout(prefix_len=4, fast_len=3, chunk_size=2)
    sp, m = layout.spans(), layout.mask()
    assert not m[sp["actions"], sp["fast"]].any() and not m[sp["state"], sp["fast"]].any()
    assert m[sp["actions"], sp["prefix"]].all() and m[sp["actions"], sp["state"]].all()
    assert torch.equal(m[sp["fast"], sp["fast"]], torch.tril(torch.ones(3, 3, dtype=torch.bool)))
    assert not m[sp["prefix"], 4:].any()
    with pytest.raises(ValueError, match="ar_mask"):
        layout.ar_mask()


def test_layout_validation_and_padding():
    with pytest.raises(ValueError):
        BlockLayout([("a", 2), ("a", 1)])
    with pytest.raises(ValueError):
        BlockLayout([("a", 2, "bidirectional", ("b",)), ("b", 1)])  # can only see earlier blocks
    pad = torch.tensor([[True, True, False, True, True]])
    m = block_mask([("p", 3), ("s", 2)], pad)[0]
    assert not m[2].any() and not m[:, 2].any()


def test_ascii_mask_draws_pi0():
    art = ascii_mask(pi0_layout(2, 2))
    lines = art.splitlines()
    assert len(lines) == 1 + 5
    assert lines[1].split("[")[1].split() == ["#", "#", ".", ".", ".", "]"]  # prefix row
    assert lines[-1].split("[")[1].split() == ["#"] * 5 + ["]"]  # action row


def test_subtask_layout_is_an_ar_mask_layout_and_the_actions_see_the_subtask():
    layout = subtask_layout(prefix_len=3, subtask_len=2, chunk_size=2)
    sp, m = layout.spans(), layout.mask()
    assert m[sp["actions"], sp["subtask"]].all() and m[sp["state"], sp["subtask"]].all()
    assert not m[sp["subtask"], sp["state"]].any() and not m[sp["prefix"], sp["subtask"]].any()
    pad = torch.tensor([[True, True, False, True, True, True, True, True]])  # a padded prompt
    assert torch.equal(layout.mask(pad), make_att_2d_masks(pad, layout.ar_mask()))


def test_vla_layout_builds_each_named_layout():
    assert set(LAYOUTS) == {"pi0", "knowledge_insulation", "subtask"}
    assert torch.equal(vla_layout("pi0", 4, 0, 3).mask(), pi0_layout(4, 3).mask())
    assert torch.equal(vla_layout("knowledge_insulation", 4, 2, 3).mask(), ki_layout(4, 2, 3).mask())
    assert torch.equal(vla_layout("subtask", 4, 2, 3).mask(), subtask_layout(4, 2, 3).mask())
    # at inference the answer block may be empty: KI then is pi0 without the answer
    assert torch.equal(vla_layout("knowledge_insulation", 4, 0, 3).mask(), pi0_layout(4, 3).mask())
    with pytest.raises(ValueError, match="no answer block"):
        vla_layout("pi0", 4, 2, 3)
    with pytest.raises(ValueError, match="unknown layout"):
        vla_layout("pi05", 4, 2, 3)
