"""Checkpoint files of the course's models: ``config.json`` + ``model.safetensors``, read strictly.

    config.json        {"kind": "TinyVLM" | "Pi0", "vlm": {...}, "pi0": {...}, "tokenizer": {...}}
    model.safetensors  every weight and buffer (normalisation statistics included)

Everything a model needs to act lives in these two files: sizes, vocabulary, chunk length, relative
actions, re-planning horizon, normalisation statistics. A missing, truncated or wrongly typed piece is a
``ValueError`` that names the file and the fix, never a silently different model. (``metadata.json``,
beside them, records how the checkpoint was *made*; nothing reads it to act.)

Old configs are migrated where the meaning is certain: ``query_keypoints`` is now
``instruction_keypoints``, ``action_loss_to_backbone=False`` is now ``knowledge_insulation=True``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

RENAMED = {"query_keypoints": "instruction_keypoints"}


def save_checkpoint(model: nn.Module, path: str | Path, config: dict) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``path`` (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=1))
    save_model(model, str(path / "model.safetensors"))


def read_config(path: str | Path) -> dict:
    """The parsed ``config.json`` of a checkpoint folder, or a one-line ``ValueError``."""
    file = Path(path) / "config.json"
    if not file.is_file():
        raise ValueError(f"{file} is missing; a checkpoint folder needs config.json and model.safetensors")
    try:
        cfg = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{file} is not valid JSON ({e}); re-make the checkpoint") from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("kind"), str):
        raise ValueError(f"{file} has no 'kind' (TinyVLM or Pi0); re-make the checkpoint")
    return cfg


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load ``model.safetensors`` into ``model`` (strict: every tensor present, every shape right)."""
    file = Path(path) / "model.safetensors"
    if not file.is_file():
        raise ValueError(f"{file} is missing; re-make the checkpoint")
    try:
        load_model(model, str(file))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:200]
        raise ValueError(f"{file} cannot be loaded ({reason}); the file is truncated, corrupt or from "
                         "another model: re-make the checkpoint") from e


def config_from_dict(cls, d, where: str):
    """A config dataclass from a JSON dict: unknown keys and wrongly typed values are errors; lists become
    tuples where the field is a tuple; missing keys take the field's default."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(d).__name__}")
    d = {RENAMED.get(k, k): v for k, v in d.items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where} has unknown settings {unknown}; it was written by another version of the "
                         "course: re-make the checkpoint")
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in d.items():
        try:
            out[k] = _coerce(v, hints[k])
        except TypeError:
            raise ValueError(f"{where}: {k!r} must be {_describe(hints[k])}, got {v!r}") from None
    return cls(**out)


def _coerce(v, hint):
    """``v`` checked against the type ``hint`` (int, float, bool, str, tuples of those, Optional)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        for a in args:
            if a is not type(None):
                try:
                    return _coerce(v, a)
                except TypeError:
                    pass
        raise TypeError
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise TypeError
        inner = args[0] if args else object
        return tuple(_coerce(x, inner) for x in v)
    if hint is bool:
        if not isinstance(v, bool):
            raise TypeError
        return v
    if hint is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError
        return v
    if hint is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError
        return float(v)
    if hint is str:
        if not isinstance(v, str):
            raise TypeError
        return v
    return v


def _describe(hint) -> str:
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))
