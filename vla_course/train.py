"""Named, seeded training recipes: ``vla-course train <recipe>`` makes ``data/checkpoints/<recipe>``.

A recipe is a function ``fn(seed, out_dir, quick) -> metadata dict`` registered with
``@recipe(name, description)`` in a module of ``vla_course/recipes/``. It builds its data, trains
with a tqdm bar, evaluates, saves the model to ``out_dir`` and returns what ``metadata.json``
should record (data, metrics, seconds). ``quick=True`` is a smoke-test budget for tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vla_course.checkpoints import checkpoint_dir, write_metadata


@dataclass
class Recipe:
    name: str
    description: str
    fn: Callable


RECIPES: dict[str, Recipe] = {}


def recipe(name: str, description: str):
    """Register a training recipe under ``name``."""
    def register(fn):
        RECIPES[name] = Recipe(name, description, fn)
        return fn
    return register


def discover() -> dict[str, Recipe]:
    """Import every module in ``vla_course.recipes`` so that their recipes register."""
    import vla_course.recipes as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    return RECIPES


def run_recipe(name: str, seed: int = 0, root: str | Path | None = None, quick: bool = False) -> Path:
    """Run a recipe and write its checkpoint (model + metadata) to ``root/<name>``."""
    import torch

    recipes = discover()
    if name not in recipes:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(recipes)) or 'none'}")
    torch.manual_seed(seed)
    out = checkpoint_dir(name, root)
    out.mkdir(parents=True, exist_ok=True)
    meta = recipes[name].fn(seed=seed, out_dir=out, quick=quick)
    write_metadata(out, recipe=name, seed=seed, data=meta.get("data", {}), metrics=meta.get("metrics", {}),
                   train_seconds=meta.get("train_seconds", 0.0),
                   extra={k: v for k, v in meta.items() if k not in ("data", "metrics", "train_seconds")})
    return out
