"""A scripted pick-and-place expert: inverse kinematics plus a small state machine.

Imitation learning needs demonstrations. On a real robot a person teleoperates;
in simulation we can *script* an expert, because the sim tells us exactly where
every cube is (privileged state). This expert:

1. **plans in Cartesian space**: a sequence of waypoints for the grasp point
   between the finger pads (above the cube, down to it, up, over the bin), with
   the fingers pointing straight down and the jaws turned to close on two
   opposite faces of the cube;
2. **moves a Cartesian target smoothly** towards the current waypoint (a speed
   limit, so the demonstrations look like a careful human, not a teleport);
3. **solves inverse kinematics** for that target every control step with damped
   least squares (DLS) on the fingertip, warm-started from the previous
   solution, and sends the joint angles as the action (absolute targets in
   LeRobot units, exactly what a policy will output);
4. **checks the outcome and re-tries**: after lifting, is the cube really in the
   gripper? During transport, is it still there? If not, go back and grasp again.

For the fine-tuning chapter's new skill, ``hold_up`` ("hold the <colour> cube up"), the same machine
ends differently: after the lift it *raises* the cube to ``HOLD_TIP_Z``, pulling it in to at most
``HOLD_RADIUS`` from the pan axis (a stretched-out arm cannot point its fingers down that high), and
*holds* it there (phases "raise" and "hold", subtask "hold it up") instead of carrying it to the bin.
Every other task takes exactly the same steps as before.

Knobs to make *imperfect* data (later chapters, e.g. RECAP, learn from it):

* ``noise_std``: Gaussian noise (degrees) added to the five arm joints of every
  action the expert outputs;
* ``mistake="fumble"``: the first grasp is aimed 4 cm beside the cube and closes
  on air; with ``recover=True`` the expert notices and grasps again;
* ``detour=d``: the first approach goes to a hover point a random 0.5d..d (metres) beside
  the cube, then corrects to the right one before descending. The demonstrations then show
  *corrections* (a cube off-centre in the wrist camera, and the move that centres it), which
  a cloned policy needs when its own first reach is off (DART's lesson: show the learner
  the states its mistakes lead to);
* ``mistake="drop"``: the gripper opens once in mid-transport and the cube falls
  on the table; with ``recover=True`` the expert picks it up again, with
  ``recover=False`` it gives up (goes home and waits: the episode fails).

Damped least squares, in one line: for a pose error ``e`` (6,) and the
fingertip Jacobian ``J`` (6 x 5) of the five arm joints, the joint update is
``dq = J^T (J J^T + lambda^2 I)^-1 e``; the damping ``lambda`` keeps steps small
and stable near singular poses (arm stretched out, wrist aligned with forearm).
"""

from __future__ import annotations

import re

import mujoco

import numpy as np

from vla_course.constants import SUBTASK_WORDS
from vla_course.sim import scene, units
from vla_course.sim.tasks import HoldUp

# Heights of the grasp point above the table (metres).
HOVER_Z = 0.08  # above a cube before going down
GRASP_Z = scene.CUBE_HALF + 0.0095  # finger ends stay ~4 mm above the table
CARRY_Z = 0.095  # cube bottom well above the bin walls
RELEASE_Z = 0.075
HOLD_TIP_Z = 0.17  # hold_up: the grasp point goes this high (the cube's centre ~1 cm lower, above HoldUp.HOLD_Z)
HOLD_RADIUS = 0.20  # ... and at most this far from the pan axis (metres)
# Speed limits of the Cartesian target (metres per second).
FAST, SLOW = 0.25, 0.15
# Jaw commands (rad): open enough for a 25 mm cube at any yaw, and fully closed
# (the 2 N m force limit makes "fully closed" a gentle squeeze on the cube).
JAW_OPEN, JAW_CLOSED = 0.6, -0.2
MISTAKES = (None, "fumble", "drop")
DROP_MIN_BIN_DIST = 0.11  # a "drop" happens at least this far from the bin centre (lands on the table)
HOME_TIP = (0.12, 0.0, 0.12)  # where the fingertip waits after giving up or finishing
MAX_ATTEMPTS = 5
# The subtask of each phase, in words the instructions already use (pi0.5's subtask labels; recordings
# carry them per frame): reach, grasp and lift are "pick up the <c> cube", carrying and letting go
# "put it in the bin", waiting at home after the last cube (or after giving up) "done".
PICK_SUBTASK, PLACE_SUBTASK, DONE_SUBTASK = "pick up the {} cube", "put it in the bin", "done"
PLACE_PHASES = ("transport", "lower", "release")
HOLD_SUBTASK, HOLD_PHASES = "hold it up", ("raise", "hold")  # hold_up's ending
# The same segments in the words of a single-step instruction, which pi0_base already follows (pi0.5 in
# miniature, ``Pi0Config.subtask_words="instruction"``): reach to release of one cube is one subtask.
INSTRUCTION_SUBTASK = "put the {} cube in the bin"
NEAR_BIN = 0.11  # a cube closer than this to the bin centre is grasped parallel to the wall


# A held cube's centre this high: the lift is done. The cube hangs below the grasp point and lags the command,
# so it reaches carry height only as the expert starts to transport; 6.7 cm lies between where its centre is
# during the lift and during the carry (tests/test_recipes_pi05.py checks the two agree frame by frame).
LIFTED_Z = 0.067


def oracle_subtask(state: dict, words: str = "phase") -> str:
    """The subtask a scene calls for now, in the expert's words, from the privileged state alone: "pick up the
    <c> cube" for the cube the task names now until it is lifted (held, its centre at carry height: the
    expert's lift ends there), "put it in the bin" from then on, while it is lowered and while it falls into
    the bin (for hold_up: "hold it up"), "done" when nothing is left. What a pi0.5 high level is scored
    against at each of its decisions (the expert's own labels also know its phase; this needs only the scene).
    A state without cube positions judges by the gripper alone (held: "put it in the bin").

    ``words="instruction"``: the subtask as the instruction of one cube, "put the <c> cube in the bin" for
    the cube the task names now, from reach to release, then "done" (see :func:`instruction_subtasks`)."""
    if words not in SUBTASK_WORDS:
        raise ValueError(f"unknown subtask words {words!r}; use one of {SUBTASK_WORDS}")
    target = state["target"]
    if target is None:
        return DONE_SUBTASK
    if words == "instruction":
        if state["instruction"].startswith("hold "):
            raise ValueError("hold_up has no instruction-words subtask (it ends holding, not in the bin); "
                             "use words='phase'")
        return INSTRUCTION_SUBTASK.format(target)
    place = HOLD_SUBTASK if state["instruction"].startswith("hold ") else PLACE_SUBTASK
    cube = state.get("cubes", {}).get(target)
    if cube is None:
        return place if state["held"] == target else PICK_SUBTASK.format(target)
    x, y, z = cube["pos"]
    bx, by, bz = state.get("bin_pos", scene.BIN_POS)
    over_bin = abs(x - bx) < scene.BIN_INNER_HALF and abs(y - by) < scene.BIN_INNER_HALF
    if state["held"] == target and (z >= LIFTED_Z or over_bin):
        return place
    if state["held"] is None and over_bin and z > bz + scene.CUBE_HALF + 0.005:
        return place  # let go of above the bin: falling in
    return PICK_SUBTASK.format(target)


def instruction_subtasks(labels: list[str], episode_index) -> list[str]:
    """The expert's recorded phase labels ("pick up the red cube", "put it in the bin", "done") in instruction
    words: "put the red cube in the bin" for the whole reach-to-release of the red cube, "done" unchanged.
    "put it in the bin" takes the colour of the episode's latest "pick up" label. ``episode_index`` (one per
    label, frames of an episode in order) keeps a colour from crossing into the next episode."""
    pick = re.compile("^" + re.escape(PICK_SUBTASK).replace(re.escape("{}"), "(\\w+)") + "$")
    out, colour, episode = [], None, None
    for label, ep in zip(labels, (int(e) for e in episode_index), strict=True):
        if ep != episode:
            colour, episode = None, ep
        m = pick.match(label)
        if m:
            colour = m.group(1)
            out.append(INSTRUCTION_SUBTASK.format(colour))
        elif label == PLACE_SUBTASK:
            if colour is None:
                raise ValueError(f"episode {ep}: {PLACE_SUBTASK!r} before any {PICK_SUBTASK.format('<c>')!r} "
                                 f"label, so no cube to name")
            out.append(INSTRUCTION_SUBTASK.format(colour))
        elif label == DONE_SUBTASK:
            out.append(DONE_SUBTASK)
        else:
            raise ValueError(f"episode {ep}: the label {label!r} has no instruction words (hold_up's "
                             f"{HOLD_SUBTASK!r} ends holding); keep words='phase' for it")
    return out


def top_down_rotation(closing_angle: float) -> np.ndarray:
    """Orientation (3x3) of the Fixed_Jaw frame for a straight-down grasp.

    The fingers point along the jaw's -y axis, so -y must be world -z; the jaws
    close along its x axis, which we turn to ``closing_angle`` in the table plane.
    """
    x = np.array([np.cos(closing_angle), np.sin(closing_angle), 0.0])
    y = np.array([0.0, 0.0, 1.0])
    return np.stack([x, y, np.cross(x, y)], axis=1)


def solve_ik(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    site_id: int,
    qpos_idx: np.ndarray,
    dof_idx: np.ndarray,
    q_init: np.ndarray,
    target_pos: np.ndarray,
    target_rot: np.ndarray,
    iterations: int = 15,
    damping: float = 0.02,
    rot_weight: float = 0.3,
    tol: float = 5e-4,
) -> np.ndarray:
    """Damped-least-squares IK for the site ``site_id`` (the fingertip).

    Works on a scratch ``data`` (never the simulation's own), moving only the
    joints ``qpos_idx`` / ``dof_idx``. ``rot_weight`` trades orientation error
    (radians) against position error (metres). Returns the joint angles (rad).
    """
    q = np.array(q_init, dtype=np.float64)
    lo, hi = units.LIMITS_RAD[: len(q), 0], units.LIMITS_RAD[: len(q), 1]
    jacp = np.zeros((3, model.nv))
    jacr = np.zeros((3, model.nv))
    for _ in range(iterations):
        data.qpos[qpos_idx] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        pos_err = target_pos - data.site_xpos[site_id]
        rot = data.site_xmat[site_id].reshape(3, 3)
        rot_err = 0.5 * sum(np.cross(rot[:, i], target_rot[:, i]) for i in range(3))
        err = np.concatenate([pos_err, rot_weight * rot_err])
        if np.linalg.norm(pos_err) < tol and np.linalg.norm(rot_err) < 10 * tol:
            break
        mujoco.mj_jacSite(model, data, jacp, jacr, site_id)
        jac = np.concatenate([jacp[:, dof_idx], rot_weight * jacr[:, dof_idx]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), err)
        q = np.clip(q + dq, lo, hi)
    return q


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class ScriptedExpert:
    """Pick-and-place demonstrator for the ``put in bin`` tasks.

    Args:
        env: an :class:`~vla_course.sim.env.SO100Env` (the expert reads its
            privileged state: cube poses, which cube is held).
        noise_std: std of Gaussian action noise on the arm joints, in degrees.
        mistake: None, "fumble" or "drop" (see module docstring).
        recover: after the mistake, try again (True) or give up (False).
        seed: seed of the expert's own randomness (noise, when the drop happens).
    """

    def __init__(self, env, noise_std: float = 0.0, mistake: str | None = None, recover: bool = True, seed: int = 0,
                 detour: float = 0.0):
        if not np.isfinite(detour) or not 0 <= detour <= 0.15:
            raise ValueError(f"detour must be in 0..0.15 (metres beside the cube), got {detour}")
        if mistake not in MISTAKES:
            raise ValueError(f"unknown mistake {mistake!r}; use one of {MISTAKES}")
        if not np.isfinite(noise_std) or noise_std < 0:
            raise ValueError(f"noise_std must be a finite number >= 0 (degrees), got {noise_std}")
        self.env = env
        self.holds = isinstance(env.task, HoldUp)  # hold_up: lift high and hold, no bin
        self.noise_std = float(noise_std)
        self.mistake = mistake
        self.recover = bool(recover)
        self.seed = int(seed)
        self.detour = float(detour)
        self._ik_data = mujoco.MjData(env.model)
        self._episode = None
        self.reset()

    # -- episode bookkeeping -------------------------------------------------
    def reset(self) -> None:
        """Forget the last episode. Call after ``env.reset()``."""
        env = self.env
        # Randomness depends on the expert's seed and the episode's seed, so the
        # same (env seed, expert seed) pair replays the same demonstration.
        self.rng = np.random.default_rng([self.seed, env.episode_seed or 0])
        self._episode = env.episode_count
        self.q = env.data.qpos[env.arm_qpos[:5]].copy()  # IK warm start (rad)
        self.cmd_pos = env.fingertip_pos()  # the moving Cartesian target
        self.cmd_rot = env.data.site_xmat[env.fingertip_site].reshape(3, 3).copy()
        self.jaw = JAW_OPEN
        self.phase = "approach"
        self.phase_steps = 0
        self.attempts = 0
        self.mistake_done = self.mistake is None
        self.gave_up = False
        self.target = None
        self.grasp_angle = 0.0
        self.aim_offset = np.zeros(2)
        self.detour_offset = np.zeros(2)
        if self.detour > 0:  # (no draw without a detour: the default expert replays as before)
            angle, dist = self.rng.uniform(-np.pi, np.pi), self.rng.uniform(0.5, 1.0) * self.detour
            self.detour_offset = dist * np.array([np.cos(angle), np.sin(angle)])
        self.transport_start = None
        self.hold_xy = None  # hold_up: where the cube is held (set when the raise starts)
        self.drop_at = float(self.rng.uniform(0.3, 0.6))  # fraction of the way to the bin
        self.history: list[str] = []
        # Taking over mid-episode (an intervention) with the named cube already in the gripper: carry on
        # with it, jaws closed, turned as they are now. Re-planning from "approach" would open the jaws
        # and teach a cloned policy to let go of the cube it should carry.
        state = env.scene_state()
        if state["held"] is not None and state["held"] == state["target"]:
            x = self.cmd_rot[:, 0]  # the jaw-closing axis (see top_down_rotation)
            self.grasp_angle = float(np.arctan2(x[1], x[0]))
            self.target, self.jaw, self.phase = state["target"], JAW_CLOSED, "lift"

    @property
    def subtask(self) -> str:
        """What the expert is doing now, in words (see ``PICK_SUBTASK``): a label for every recorded frame."""
        if self.phase == "home" or self.gave_up:
            return DONE_SUBTASK
        if self.phase in PLACE_PHASES:
            return PLACE_SUBTASK
        if self.phase in HOLD_PHASES:
            return HOLD_SUBTASK
        # retreat and approach: the cube the task names now (right after a retreat ``self.target`` is still
        # the cube just binned until the next step's update)
        target = self.target if self.phase not in ("retreat", "approach") else None
        target = target or self.env.scene_state()["target"]
        return DONE_SUBTASK if target is None else PICK_SUBTASK.format(target)

    def _go(self, phase: str) -> None:
        self.history.append(phase)
        self.phase = phase
        self.phase_steps = 0

    # -- geometry helpers ---------------------------------------------------
    def _closing_angle(self, xy: np.ndarray, cube_yaw: float, bin_xy: np.ndarray) -> float:
        """Jaw closing direction: along a cube face normal, needing the least wrist roll.

        With zero wrist roll the jaws close sideways (perpendicular to the
        direction the arm reaches in); the cube's faces allow that angle plus
        any multiple of 90 degrees, and we take the nearest one. Two exceptions:
        a cube lying next to the bin is grasped with the jaws parallel to the
        bin's wall (so the swinging jaw does not hit it), and every second
        re-try turns the grasp by 90 degrees (do not repeat what just failed).
        """
        natural = np.arctan2(xy[1], xy[0]) + np.pi / 2
        k = np.round((natural - cube_yaw) / (np.pi / 2))
        angle = float(cube_yaw + k * np.pi / 2)
        to_bin = bin_xy - xy
        if np.linalg.norm(to_bin) < NEAR_BIN:
            along = abs(np.cos(angle) * to_bin[0] + np.sin(angle) * to_bin[1]) / np.linalg.norm(to_bin)
            if along > np.cos(np.pi / 4):  # jaws would close towards the bin: turn 90 degrees
                angle += np.pi / 2 if _wrap(natural - angle) > 0 else -np.pi / 2
        elif self.attempts % 2 == 1:
            angle += np.pi / 2 if _wrap(natural - angle) > 0 else -np.pi / 2
        return angle

    def _move_towards(self, waypoint: np.ndarray, speed: float) -> bool:
        """Advance the Cartesian target; True once it sits on the waypoint."""
        step = speed / self.env.fps
        delta = waypoint - self.cmd_pos
        dist = np.linalg.norm(delta)
        self.cmd_pos = waypoint.copy() if dist <= step else self.cmd_pos + delta * (step / dist)
        return dist <= step

    def _tip_near(self, waypoint: np.ndarray, tol: float) -> bool:
        return bool(np.linalg.norm(self.env.fingertip_pos() - waypoint) < tol)

    # -- the policy ----------------------------------------------------------
    def act(self, obs=None) -> np.ndarray:
        """Next action: absolute joint targets in LeRobot units, float32 (6,)."""
        env = self.env
        if self._episode != env.episode_count:  # env was reset but we were not told
            self.reset()
        state = env.scene_state()
        self._update_phase(state)
        rot = top_down_rotation(self.grasp_angle) if self.phase != "home" else self.cmd_rot
        self.q = solve_ik(
            env.model, self._ik_data, env.fingertip_site, env.arm_qpos[:5], env.arm_dofs[:5],
            self.q, self.cmd_pos, rot,
        )
        action = units.rad_to_lerobot(np.append(self.q, self.jaw))
        if self.noise_std > 0:
            action[:5] += self.rng.normal(0.0, self.noise_std, size=5).astype(np.float32)
        return units.clamp_lerobot(action)

    def _update_phase(self, state: dict) -> None:
        """The state machine: one transition check per control step.

        approach -> descend -> grasp -> lift -> transport -> lower -> release,
        with "dropped" (the drop mistake), "retreat" (on to the next target of a
        multi-step task) and "home" (all done, or given up) on the side; for
        hold_up: approach -> descend -> grasp -> lift -> raise -> hold.
        """
        self.phase_steps += 1
        if self.phase in ("approach", "descend", "grasp", "lift"):
            target = state["target"]
            if target is None:  # everything is in the bin
                self._go("home")
            else:
                self.target = target
        if self.phase == "approach":
            self.jaw = JAW_OPEN
            cube = state["cubes"][self.target]
            xy = np.array(cube["pos"][:2])
            if self.phase_steps == 1:
                self.grasp_angle = self._closing_angle(xy, cube["yaw"], np.array(state["bin_pos"][:2]))
                self.aim_offset = np.zeros(2)
                if self.mistake == "fumble" and not self.mistake_done:
                    # Aim 4 cm beside the cube, along the reach direction: the
                    # fingers come down next to it and close on air.
                    radial = xy / np.linalg.norm(xy)
                    self.aim_offset = 0.04 * radial * self.rng.choice([-1.0, 1.0])
            waypoint = np.array([*(xy + self.aim_offset + self.detour_offset), HOVER_Z])
            arrived = self._move_towards(waypoint, FAST)
            if self.detour_offset.any() and (arrived or self.phase_steps > 60):
                self.detour_offset = np.zeros(2)  # off to the side: now correct over the cube
                self.phase_steps = 1
            elif (arrived and self._tip_near(waypoint, 0.01)) or self.phase_steps > 60:
                self._go("descend")
        elif self.phase == "descend":
            xy = np.array(state["cubes"][self.target]["pos"][:2]) + self.aim_offset
            waypoint = np.array([*xy, GRASP_Z])
            arrived = self._move_towards(waypoint, SLOW)
            if (arrived and self._tip_near(waypoint, 0.006)) or self.phase_steps > 45:
                self._go("grasp")
        elif self.phase == "grasp":
            self.jaw = JAW_CLOSED
            if self.phase_steps >= 12:
                self._go("lift")
        elif self.phase == "lift":
            waypoint = np.array([*self.cmd_pos[:2], CARRY_Z])
            arrived = self._move_towards(waypoint, SLOW)
            if arrived:
                if state["held"] != self.target:
                    self._failed_grasp()
                elif self.holds:
                    xy = self.cmd_pos[:2].copy()
                    self.hold_xy = xy * min(1.0, HOLD_RADIUS / np.linalg.norm(xy))
                    self._go("raise")
                else:
                    self.transport_start = self.cmd_pos[:2].copy()
                    self._go("transport")
        elif self.phase in HOLD_PHASES:  # hold_up: up (and in) to the hold point, then stay there
            if state["held"] != self.target:
                self._failed_grasp()  # it slipped out: grasp again
            elif self._move_towards(np.array([*self.hold_xy, HOLD_TIP_Z]), SLOW) and self.phase == "raise":
                self._go("hold")
        elif self.phase == "transport":
            bin_xy = self.env.task.drop_point(state)
            waypoint = np.array([*bin_xy, CARRY_Z])
            arrived = self._move_towards(waypoint, FAST)
            # The drop happens a fraction ``drop_at`` of the way to the bin, but
            # never closer than DROP_MIN_BIN_DIST to its centre.
            total = np.linalg.norm(bin_xy - self.transport_start)
            drop_dist = max(DROP_MIN_BIN_DIST, (1.0 - self.drop_at) * total)
            to_bin = np.linalg.norm(bin_xy - self.cmd_pos[:2])
            if self.mistake == "drop" and not self.mistake_done and to_bin <= drop_dist:
                self.mistake_done = True
                self.jaw = JAW_OPEN  # let go in mid-air
                self._go("dropped")
            elif state["held"] != self.target:
                self._failed_grasp()  # it slipped out by itself
            elif arrived and self._tip_near(waypoint, 0.015):
                self._go("lower")
        elif self.phase == "dropped":
            if self.phase_steps >= 10:  # wait for the cube to land
                if self.recover:
                    self._retry()
                else:
                    self.gave_up = True
                    self._go("home")
        elif self.phase == "lower":
            bin_xy = self.env.task.drop_point(state)
            if self._move_towards(np.array([*bin_xy, RELEASE_Z]), SLOW):
                self._go("release")
        elif self.phase == "release":
            self.jaw = JAW_OPEN
            cube = state["cubes"][self.target]
            if state["target"] not in (None, self.target):
                self._go("retreat")  # this one is in; on to the next target
            elif self.phase_steps > 20 and not cube["in_bin"]:
                self._retry()  # missed the bin
        elif self.phase == "retreat":
            if self._move_towards(np.array([*self.cmd_pos[:2], CARRY_Z]), FAST):
                self.attempts = 0
                self._go("approach")
        elif self.phase == "home":
            self.jaw = JAW_OPEN
            self._move_towards(np.array(HOME_TIP), FAST)

    def _failed_grasp(self) -> None:
        """The cube is not in the gripper when it should be."""
        fumbled = self.mistake == "fumble" and not self.mistake_done
        if fumbled:
            self.mistake_done = True
        if fumbled and not self.recover:
            self.gave_up = True
            self._go("home")
        else:
            self._retry()

    def _retry(self) -> None:
        self.attempts += 1
        self.jaw = JAW_OPEN
        if self.attempts >= MAX_ATTEMPTS:
            self.gave_up = True
            self._go("home")
        else:
            self._go("approach")
