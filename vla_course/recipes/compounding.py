"""Few demonstrations, compounding errors, and the expert's corrections (notebook 08, section 1).

Two pi0 policies of ``pi0_base``'s recipe (the same model, vlm_base start and keypoint tokens) on a small
budget, to watch behaviour cloning drift (``vla_course.training.compounding``)::

    vla-course train pi0_bc50       # behaviour cloning on 50 expert demonstrations (layouts 0..49)
    vla-course train pi0_dagger50   # the same round 0, then one round of 50 expert interventions (HG-DAgger
                                    # style: the policy drives, the expert takes over from where it left the
                                    # arm), training on both

``pi0_dagger50`` re-uses ``pi0_bc50``'s cached round 0 (the two recipes share the name of their rounds), so it
costs the interventions and the second round only; it trains ``round_steps`` more steps than ``pi0_bc50`` (the
notebook says so beside every comparison).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from vla_course.recipes.pi0 import Pi0BaseRecipe
from vla_course.recipes.pi0 import pi0_base as _pi0_recipe
from vla_course.train import recipe

FEW = {"name": "pi0_bc50", "recordings": ((0, 50, 0.0),), "steps": 2000, "batch_size": 32, "warmup": 100}
DAGGER = {**FEW, "intervention_rounds": ((2000, 50),), "round_steps": 1000}


@recipe("pi0_bc50", "behaviour cloning on 50 expert demonstrations (pi0_base's model, 2000 steps x 32): the "
                    "policy whose states drift, notebook 08", config=partial(Pi0BaseRecipe, **FEW))
def pi0_bc50(cfg: Pi0BaseRecipe, *, seed: int, out_dir: Path, cache=None) -> dict:
    return _pi0_recipe(cfg, seed=seed, out_dir=out_dir, cache=cache)


@recipe("pi0_dagger50", "pi0_bc50's round 0, then 50 expert interventions on its own rollouts and 1000 more "
                        "steps on both (HG-DAgger style), notebook 08", config=partial(Pi0BaseRecipe, **DAGGER))
def pi0_dagger50(cfg: Pi0BaseRecipe, *, seed: int, out_dir: Path, cache=None) -> dict:
    return _pi0_recipe(cfg, seed=seed, out_dir=out_dir, cache=cache)
