"""Checkpoints: a folder per model in ``data/checkpoints/<name>/``.

    config.json        sizes, vocabulary, kind (written by the model's ``save_pretrained``)
    model.safetensors  weights and normalisation statistics
    metadata.json      how it was made: recipe, seed, data, metrics, the command that reproduces it

Every shipped checkpoint was produced by the project's own recipe (``vla-course train <name>``);
nothing is downloaded. Loading a missing or mismatched checkpoint raises an error that says how
to (re)make it.

Some recipes are baselines the notebooks only read numbers from; to keep ``data/`` small their weights are not
shipped, only what their run measured: ``data/results/<name>.json`` (the same ``metadata.json``), which
:func:`read_metadata` finds when there is no checkpoint folder.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
RESULTS_DIR = CHECKPOINT_DIR.parent / "results"  # metadata of recipes whose weights are not shipped


def checkpoint_dir(name: str, root: str | Path | None = None) -> Path:
    return Path(root or CHECKPOINT_DIR) / name


def write_metadata(path: str | Path, *, recipe: str, seed: int, data: dict, metrics: dict,
                   train_seconds: float, extra: dict | None = None) -> Path:
    """Write ``metadata.json`` beside a saved model."""
    import torch

    meta = {
        "recipe": recipe, "seed": seed, "command": f"vla-course train {recipe} --seed {seed}",
        "data": data, "metrics": metrics, "train_seconds": round(train_seconds, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "created": time.strftime("%Y-%m-%d"), **(extra or {}),
    }
    out = Path(path) / "metadata.json"
    out.write_text(json.dumps(meta, indent=1))
    return out


def read_metadata(name: str, root: str | Path | None = None) -> dict:
    """The ``metadata.json`` of checkpoint ``name``; for the default root, a baseline's shipped results
    (``data/results/<name>.json``) when its weights are not shipped."""
    path = checkpoint_dir(name, root) / "metadata.json"
    if not path.exists() and root is None and (RESULTS_DIR / f"{name}.json").exists():
        path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(_missing(name, root))
    return json.loads(path.read_text())


def load_pretrained(name: str, kind: str | None = None, root: str | Path | None = None):
    """Load ``data/checkpoints/<name>`` as the model class its config names (``TinyVLM``, ``Pi0`` or
    ``ValueFunction``).

    A missing checkpoint is a ``FileNotFoundError`` that says how to make it; a broken or mismatched one
    (garbage weights, a wrongly typed setting, a missing ``delta_mask``) a one-line ``ValueError`` naming
    the file and the fix (``vla_course.models.serialization`` reads strictly).
    """
    from vla_course.models import Pi0, TinyVLM
    from vla_course.models.serialization import read_config
    from vla_course.models.value import ValueFunction

    path = checkpoint_dir(name, root)
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise FileNotFoundError(_missing(name, root))
    try:
        found = read_config(path)["kind"]
    except ValueError as e:
        raise ValueError(f"checkpoint {name!r}: {e}") from e
    if kind is not None and found != kind:
        raise ValueError(f"checkpoint {name!r} holds a {found}, not a {kind}; pick a {kind} checkpoint")
    classes = {"TinyVLM": TinyVLM, "Pi0": Pi0, "ValueFunction": ValueFunction}
    if found not in classes:
        raise ValueError(f"checkpoint {name!r} has unknown kind {found!r}; expected one of {sorted(classes)}")
    try:
        return classes[found].from_pretrained(path)
    except ValueError as e:
        raise ValueError(f"checkpoint {name!r}: {e} (`vla-course train {name}` re-makes it)") from e


def _missing(name: str, root) -> str:
    where = checkpoint_dir(name, root)
    shipped = " (only its results are shipped, data/results)" if root is None and (
        RESULTS_DIR / f"{name}.json").exists() else ""
    return f"checkpoint {name!r} not found at {where}{shipped}; make it with `vla-course train {name}`"
