"""Named, seeded training recipes: ``vla-course train <recipe>`` makes ``data/checkpoints/<recipe>``.

A recipe is a small frozen config dataclass (its budget and knobs; ``.quick()`` gives a smoke-test budget
for tests) and a function ``fn(config, *, seed, out_dir, cache) -> metadata dict``, registered with
``@recipe(name, description, config=ConfigClass)`` in a module of ``vla_course/recipes/``. The function
builds its data (recordings are cached under ``cache``, see ``vla_course.data.cache``), trains with the one
loop (``vla_course.training``), evaluates, saves the model to ``out_dir`` and returns what ``metadata.json``
should record (data, metrics, seconds); the config itself is recorded too.
"""

from __future__ import annotations

import dataclasses
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
    config: type


RECIPES: dict[str, Recipe] = {}


def recipe(name: str, description: str, config: type):
    """Register a training recipe under ``name`` with its config dataclass."""
    def register(fn):
        RECIPES[name] = Recipe(name, description, fn, config)
        return fn
    return register


def discover() -> dict[str, Recipe]:
    """Import every module in ``vla_course.recipes`` so that their recipes register."""
    import vla_course.recipes as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    return RECIPES


def run_recipe(name: str, seed: int = 0, root: str | Path | None = None, quick: bool = False,
               cache: str | Path | None = None, config=None) -> Path:
    """Run a recipe and write its checkpoint (model + metadata) to ``root/<name>``.

    ``config`` overrides the recipe's default config (an instance of its config class); ``quick`` takes its
    ``.quick()`` budget. ``cache`` is where recordings and per-round checkpoints are kept (default
    ``outputs/``, see ``vla_course.data.cache``).
    """
    import torch

    recipes = discover()
    if name not in recipes:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(recipes)) or 'none'}")
    r = recipes[name]
    cfg = config if config is not None else r.config()
    if quick:
        cfg = cfg.quick()
    torch.manual_seed(seed)
    out = checkpoint_dir(name, root)
    out.mkdir(parents=True, exist_ok=True)
    meta = r.fn(cfg, seed=seed, out_dir=out, cache=cache)
    write_metadata(out, recipe=name, seed=seed, data=meta.get("data", {}), metrics=meta.get("metrics", {}),
                   train_seconds=meta.get("train_seconds", 0.0),
                   extra={"config": _jsonable(dataclasses.asdict(cfg)), "quick": quick,
                          **{k: v for k, v in meta.items() if k not in ("data", "metrics", "train_seconds", "quick")}})
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
