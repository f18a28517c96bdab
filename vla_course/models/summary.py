"""Parameter counts, split by part (vision / text embedding / backbone / action expert / action heads)."""

from __future__ import annotations

from torch import nn


def _n(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Count a :class:`TinyVLM` or :class:`Pi0`'s parameters by part (tied weights counted once).

    Keys: ``vision``, ``text_embedding``, ``backbone``, ``action_expert``,
    ``action_projections`` (state/action/time in and out), ``total``.
    """
    vlm = getattr(model, "vlm", model)
    out = {
        "vision": _n(vlm.vision),
        "text_embedding": _n(vlm.embed),
        "backbone": _n(vlm.backbone),
        "action_expert": _n(getattr(model, "action_expert", None)),
    }
    named = {"vlm", "action_expert"}
    out["action_projections"] = sum(_n(m) for name, m in model.named_children() if name not in named) \
        if model is not vlm else 0
    out["total"] = sum(p.numel() for p in model.parameters())
    return out


def format_parameters(model: nn.Module) -> str:
    """One line per part, e.g. for a notebook cell or the latency benchmark."""
    counts = count_parameters(model)
    return "\n".join(f"{k:>20s}: {v:>9,d}" for k, v in counts.items())
