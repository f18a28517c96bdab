"""Figures for the action-head chapters (02, 03). Arrays in, matplotlib artists out.

Nothing here imports a model: the notebooks pass tensors or arrays of samples,
sampling paths and velocities.
"""

from __future__ import annotations

import numpy as np
import matplotlib.pyplot as plt
from matplotlib import animation
from matplotlib.patches import Circle

METHOD_COLORS = {"regression": "tab:red", "regression (L1)": "tab:brown", "ddpm": "tab:orange", "ddim": "tab:purple",
                 "diffusion": "tab:orange", "flow": "tab:blue", "data": "0.6"}


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def draw_obstacle(ax, center=(0.5, 0.0), radius=0.15, **kwargs):
    """A grey disc: the obstacle the trajectories must go around."""
    kw = dict(color="0.3", alpha=0.35, zorder=0)
    kw.update(kwargs)
    ax.add_patch(Circle(tuple(_np(center)), radius, **kw))


def plot_trajectories(ax, trajs, color="tab:blue", alpha=0.25, lw=1.0, label=None, max_lines=100,
                      start_goal=True):
    """Draw up to ``max_lines`` polylines from ``trajs (N, H, 2)``."""
    trajs = _np(trajs)[:max_lines]
    for i, tr in enumerate(trajs):
        ax.plot(tr[:, 0], tr[:, 1], color=color, alpha=alpha, lw=lw, label=label if i == 0 else None)
    if start_goal:
        ax.plot([0], [0], "k^", ms=7)
        ax.plot([1], [0], "k*", ms=10)
    ax.set_aspect("equal")
    ax.set_xlim(-0.1, 1.2)
    ax.set_ylim(-0.6, 0.6)


def scatter(ax, x, color="tab:blue", s=2, alpha=0.4, title=None, lim=None, label=None):
    """Scatter 2-D points ``x (N, 2)``."""
    x = _np(x)
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, color=color, lw=0, label=label)
    ax.set_aspect("equal")
    if lim is not None:
        ax.set_xlim(lim[0], lim[1])
        ax.set_ylim(lim[2], lim[3])
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_paths(ax, path, color="tab:blue", n=40, alpha=0.5, lw=0.8, legend=False):
    """Sampling trajectories of the first ``n`` samples: ``path (K+1, M, 2)``; o = noise, . = sample."""
    p = _np(path)[:, :n]
    for i in range(p.shape[1]):
        ax.plot(p[:, i, 0], p[:, i, 1], color=color, alpha=alpha, lw=lw, label="path" if i == 0 else None)
    ax.scatter(p[0, :, 0], p[0, :, 1], s=10, facecolors="none", edgecolors="k", lw=0.6, label="start (noise)")
    ax.scatter(p[-1, :, 0], p[-1, :, 1], s=10, color=color, label="sample")
    if legend:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_vector_field(ax, grid_x, grid_y, u, v, color="tab:blue", title=None):
    """A quiver plot of a 2-D velocity field on a grid (arrays of the grid's shape)."""
    ax.quiver(_np(grid_x), _np(grid_y), _np(u), _np(v), color=color, angles="xy", scale_units="xy",
              scale=None, width=0.005, headwidth=4, headlength=5, alpha=0.8)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def plot_quality_vs_steps(ax, steps, curves: dict, floor=None, ylabel="sliced Wasserstein (lower is better)"):
    """One line per method: quality at each number of sampling steps (log x axis)."""
    for name, ys in curves.items():
        ax.plot(steps, ys, "o-", color=METHOD_COLORS.get(name, None), label=name)
    if floor is not None:
        ax.axhline(floor, color="0.5", ls="--", lw=1, label="data vs fresh data")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(steps)
    ax.set_xticklabels([str(s) for s in steps])
    ax.set_xlabel("sampling steps")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def animate_paths(paths: dict, ref=None, lim=(-3, 3, -3, 3), interval=400, figsize=(7.5, 2.8), dpi=72):
    """Animate several samplers side by side: ``paths[name] = (K+1, M, 2)``, frame k shows step k.

    Methods with fewer steps hold their last frame. Returns a ``FuncAnimation``;
    show it in a notebook with ``HTML(anim.to_jshtml())`` so it plays on GitHub too.
    """
    names = list(paths)
    arrs = {k: _np(v) for k, v in paths.items()}
    frames = max(a.shape[0] for a in arrs.values())
    fig, axes = plt.subplots(1, len(names), figsize=figsize, dpi=dpi)
    axes = np.atleast_1d(axes)
    scats = []
    for ax, name in zip(axes, names):
        if ref is not None:
            scatter(ax, ref, color=METHOD_COLORS["data"], s=1, alpha=0.2)
        a = arrs[name]
        scats.append(ax.scatter(a[0, :, 0], a[0, :, 1], s=3, color=METHOD_COLORS.get(name, "tab:blue")))
        ax.set_xlim(lim[0], lim[1])
        ax.set_ylim(lim[2], lim[3])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()

    def update(k):
        for ax, sc, name in zip(axes, scats, names):
            a = arrs[name]
            j = min(k, a.shape[0] - 1)
            sc.set_offsets(a[j])
            ax.set_title(f"{name}: step {j}/{a.shape[0] - 1}", fontsize=9)
        return scats

    update(0)
    anim = animation.FuncAnimation(fig, update, frames=frames, interval=interval, blit=False)
    plt.close(fig)
    return anim
