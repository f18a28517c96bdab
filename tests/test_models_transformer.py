"""The multi-expert transformer: shared attention, KV cache, knowledge-insulation stop-gradient."""

import pytest
import torch

from vla_course.models import Expert, ExpertConfig, joint_forward, make_att_2d_masks
from vla_course.models import positions_from_pad




def _setup(seed=0):
    torch.manual_seed(seed)
    backbone = Expert(ExpertConfig(width=32, mlp_dim=64, depth=2, num_heads=2, head_dim=8))
    expert = Expert(ExpertConfig(width=16, mlp_dim=32, depth=2, num_heads=2, head_dim=8))
    for p in list(backbone.parameters()) + list(expert.parameters()):  # non-trivial norms
        if p.ndim == 1:
            p.data.normal_(0, 0.3)
    b, n_p, n_s = 3, 6, 4
    prefix, suffix = torch.randn(b, n_p, 32), torch.randn(b, n_s, 16)
    prefix_pad = torch.ones(b, n_p, dtype=torch.bool)
    prefix_pad[0, -2:] = False  # right-padded prompts
    prefix_pad[2, -1:] = False
    pad = torch.cat([prefix_pad, torch.ones(b, n_s, dtype=torch.bool)], 1)
    ar = torch.tensor([0] * n_p + [1] + [1] + [0] * (n_s - 2))  # pi0: prefix | state | actions
    return backbone, expert, prefix, suffix, prefix_pad, pad, ar


def test_cached_suffix_equals_full_forward():
    backbone, expert, prefix, suffix, prefix_pad, pad, ar = _setup()
    n_p = prefix.shape[1]
    mask, pos = make_att_2d_masks(pad, ar), positions_from_pad(pad)
    (out_p, out_s), _ = joint_forward([backbone, expert], [prefix, suffix], mask, pos)
    # prefix once, with cache; then the suffix alone against the cache
    (cp, _), cache = joint_forward([backbone, expert], [prefix, None], mask[:, :n_p, :n_p], pos[:, :n_p],
                                   return_cache=True)
    (_, cs), _ = joint_forward([backbone, expert], [None, suffix], mask[:, n_p:], pos[:, n_p:], kv_cache=cache)
    real = prefix_pad[..., None]
    torch.testing.assert_close(cp * real, out_p * real)
    torch.testing.assert_close(cs, out_s)


def test_prefix_never_sees_the_suffix():
    backbone, expert, prefix, suffix, prefix_pad, pad, ar = _setup()
    mask, pos = make_att_2d_masks(pad, ar), positions_from_pad(pad)
    (p1, s1), _ = joint_forward([backbone, expert], [prefix, suffix], mask, pos)
    (p2, s2), _ = joint_forward([backbone, expert], [prefix, suffix + 5 * torch.randn_like(suffix)], mask, pos)
    torch.testing.assert_close(p1[prefix_pad], p2[prefix_pad])  # padding rows are garbage by design
    assert not torch.allclose(s1, s2)


def test_experts_must_share_heads():
    a = Expert(ExpertConfig(32, 64, 1, num_heads=2, head_dim=8))
    b = Expert(ExpertConfig(16, 32, 1, num_heads=4, head_dim=8))
    x, y = torch.randn(1, 2, 32), torch.randn(1, 2, 16)
    with pytest.raises(ValueError, match="num_heads"):
        joint_forward([a, b], [x, y], torch.ones(1, 4, 4, dtype=torch.bool), torch.arange(4)[None])


def test_knowledge_insulation_stops_gradient_but_not_values():
    backbone, expert, prefix, suffix, _, pad, ar = _setup()
    prefix.requires_grad_(True)
    mask, pos = make_att_2d_masks(pad, ar), positions_from_pad(pad)
    outs = {}
    for insulate in (False, True):
        backbone.zero_grad(set_to_none=True), expert.zero_grad(set_to_none=True)
        prefix.grad = None
        (_, s), _ = joint_forward([backbone, expert], [prefix, suffix], mask, pos, knowledge_insulation=insulate)
        s.pow(2).sum().backward()
        outs[insulate] = s.detach()
        bb = [p.grad for p in backbone.parameters()]
        assert all(g is not None and g.abs().max() > 0 for g in (p.grad for p in expert.parameters()))
        if insulate:
            assert all(g is None or g.abs().max() == 0 for g in bb)
            assert prefix.grad is None or prefix.grad.abs().max() == 0
        else:
            assert backbone.layers[0].qkv.weight.grad.abs().max() > 0
            assert prefix.grad.abs().max() > 0
    torch.testing.assert_close(outs[True], outs[False])  # same forward pass


def test_insulation_with_kv_cache_detaches_cached_backbone_keys():
    backbone, expert, prefix, suffix, _, pad, ar = _setup()
    n_p = prefix.shape[1]
    mask, pos = make_att_2d_masks(pad, ar), positions_from_pad(pad)
    _, cache = joint_forward([backbone, expert], [prefix, None], mask[:, :n_p, :n_p], pos[:, :n_p],
                             return_cache=True)
    (_, s), _ = joint_forward([backbone, expert], [None, suffix], mask[:, n_p:], pos[:, n_p:], kv_cache=cache,
                              knowledge_insulation=True)
    s.sum().backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in backbone.parameters())
    assert all(p.grad.abs().max() > 0 for p in expert.parameters())


def test_the_cache_owns_its_pad_mask():
    backbone, expert, prefix, suffix, prefix_pad, pad, ar = _setup()
    n_p = prefix.shape[1]
    mask, pos = make_att_2d_masks(pad, ar), positions_from_pad(pad)
    _, cache = joint_forward([backbone], [prefix], mask[:, :n_p, :n_p], pos[:, :n_p], return_cache=True,
                             pad_mask=prefix_pad)
    assert torch.equal(cache.pad_mask, prefix_pad) and torch.equal(cache.next_pos, prefix_pad.sum(1))
    # one more token per row: the new cache appends its (real) pad entry; positions continue after the real ones
    x = torch.randn(3, 1, 32)
    key_pad = torch.cat([cache.pad_mask, torch.ones(3, 1, dtype=torch.bool)], 1)
    _, cache2 = joint_forward([backbone], [x], key_pad[:, None, :], cache.next_pos[:, None], kv_cache=cache,
                              return_cache=True)
    assert torch.equal(cache2.pad_mask, key_pad) and cache2.length == n_p + 1
    assert torch.equal(cache2.next_pos, prefix_pad.sum(1) + 1)
