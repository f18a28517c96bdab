"""The simulated SO-100 world: an arm, coloured cubes, a bin, and tasks.

Quick start::

    from vla_course.sim import make_env
    from vla_course.sim.expert import ScriptedExpert

    env = make_env(task="pick_place", seed=0)          # 96x96 front + wrist images
    expert = ScriptedExpert(env)
    obs, info = env.reset()
    expert.reset()
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        done = terminated or truncated
    env.close()

Modules, one concept each: ``units`` (radians <-> LeRobot units), ``scene``
(building the MuJoCo model), ``tasks`` (layouts and success), ``env`` (the
gym-style loop), ``expert`` (a scripted IK pick-and-place demonstrator).
"""

import os

# MuJoCo picks its OpenGL backend when it is first imported: choose a headless
# one (EGL, software-rendered by Mesa on a machine without a GPU) unless the
# user already chose. This must run before any `import mujoco`.
os.environ.setdefault("MUJOCO_GL", "egl")

from vla_course.sim.env import SO100Env, make_env  # noqa: E402
from vla_course.sim.tasks import TASKS, register_task  # noqa: E402

__all__ = ["SO100Env", "TASKS", "make_env", "register_task"]
