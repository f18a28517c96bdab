"""Figures for the action-head chapters (02, 03). Arrays in, matplotlib (or plotly) figures out.

Nothing here imports a model: the notebooks pass tensors or arrays of samples,
sampling paths and velocities. To show an animation where it plays without a
kernel (GitHub included), see :mod:`vla_course.viz.anim`.
"""

from __future__ import annotations

import numpy as np
import matplotlib.pyplot as plt
from matplotlib import animation
from matplotlib.patches import Circle

METHOD_COLORS = {"regression": "tab:red", "regression (L1)": "tab:brown", "ddpm": "tab:orange", "ddim": "tab:purple",
                 "diffusion": "tab:orange", "flow": "tab:blue", "reflow": "tab:green", "data": "0.6"}
# the reference sample of the true distribution drawn behind samples: visible, but behind them
REF_STYLE = dict(color="0.55", s=3, alpha=0.35)


def plural(n: int, word: str) -> str:
    """``"1 step"``, ``"2 steps"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


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


def animate_paths(paths: dict, ref=None, lim=(-3, 3, -3, 3), interval=400, figsize=(9.6, 3.5), dpi=100,
                  title_size=12):
    """Animate several samplers side by side: ``paths[name] = (K+1, M, 2)``, frame k shows step k.

    Methods with fewer steps hold their last frame. Returns a ``FuncAnimation``; show it with
    :func:`vla_course.viz.anim.jshtml` (a player for Jupyter) and :func:`vla_course.viz.anim.to_gif`
    (a GIF, which also plays on GitHub).
    """
    names = list(paths)
    arrs = {k: _np(v) for k, v in paths.items()}
    frames = max(a.shape[0] for a in arrs.values())
    fig, axes = plt.subplots(1, len(names), figsize=figsize, dpi=dpi)
    axes = np.atleast_1d(axes)
    scats, titles = [], []
    for ax, name in zip(axes, names):
        if ref is not None:
            scatter(ax, ref, **REF_STYLE)
        a = arrs[name]
        scats.append(ax.scatter(a[0, :, 0], a[0, :, 1], s=5, color=METHOD_COLORS.get(name, "tab:blue")))
        titles.append(ax.set_title(" ", fontsize=title_size))
        ax.set_xlim(lim[0], lim[1])
        ax.set_ylim(lim[2], lim[3])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()

    def update(k):
        for ttl, sc, name in zip(titles, scats, names):
            a = arrs[name]
            j = min(k, a.shape[0] - 1)
            sc.set_offsets(a[j])
            ttl.set_text(f"{name}: step {j}/{a.shape[0] - 1}")
        return scats

    update(0)
    anim = animation.FuncAnimation(fig, update, frames=frames, interval=interval, blit=False)
    plt.close(fig)
    return anim


def animate_chunks(paths: dict, center=(0.5, 0.0), radius=0.15, num_frames=11, interval=450, lim=None,
                   figsize=(9.0, 3.6), dpi=100, title_size=12, through=None):
    """Action chunks being denoised, one panel per method: ``paths[name] = (K+1, M, H, 2)``.

    Frame ``j`` of ``num_frames`` shows each method the same fraction of the way, step
    ``round(j K / (num_frames - 1))`` of its ``K`` (so 10 flow steps and 100 DDPM steps play
    side by side). ``through[name]`` (optional, ``(M,)`` booleans): in the last frame the chunks
    that pass through the obstacle turn red and the title counts them. Returns a ``FuncAnimation``.
    """
    names = list(paths)
    arrs = {k: _np(v) for k, v in paths.items()}
    if lim is None:
        allp = np.concatenate([a.reshape(-1, 2) for a in arrs.values()])
        lo, hi = np.percentile(allp, 1, axis=0), np.percentile(allp, 99, axis=0)
        pad = 0.1 * (hi - lo)
        lim = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    fig, axes = plt.subplots(1, len(names), figsize=figsize, dpi=dpi, sharey=True)
    axes = np.atleast_1d(axes)
    lines, titles = {}, {}
    for ax, name in zip(axes, names):
        draw_obstacle(ax, center, radius)
        ax.add_patch(Circle(tuple(_np(center)), radius, fill=False, ec="0.15", lw=1.5, zorder=3))  # seen through noise
        ax.plot([0], [0], "k^", ms=8, zorder=5)
        ax.plot([1], [0], "k*", ms=11, zorder=5)
        a = arrs[name]
        lines[name] = [ax.plot(c[:, 0], c[:, 1], color=METHOD_COLORS.get(name, "tab:blue"), alpha=0.5, lw=1)[0]
                       for c in a[0]]
        titles[name] = ax.set_title(" ", fontsize=title_size)
        ax.set_xlim(lim[0], lim[1])
        ax.set_ylim(lim[2], lim[3])
        ax.set_aspect("equal")
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")
    fig.tight_layout()

    def update(j):
        out = []
        for name in names:
            a = arrs[name]
            k_total = a.shape[0] - 1
            k = int(round(j * k_total / max(num_frames - 1, 1)))
            last = j == num_frames - 1
            hits = None if through is None or not last else _np(through[name])
            for i, ln in enumerate(lines[name]):
                ln.set_data(a[k, i, :, 0], a[k, i, :, 1])
                hit = hits is not None and bool(hits[i])
                ln.set_color("tab:red" if hit else METHOD_COLORS.get(name, "tab:blue"))
                ln.set_alpha(1.0 if hit else 0.5)
                ln.set_linewidth(2.0 if hit else 1.0)
                ln.set_zorder(4 if hit else 2)
                out.append(ln)
            text = f"{name}: step {k}/{k_total}"
            if hits is not None:
                text += f", {int(hits.sum())}/{len(hits)} hit"
            titles[name].set_text(text)
        return out

    update(0)
    anim = animation.FuncAnimation(fig, update, frames=num_frames, interval=interval, blit=False)
    plt.close(fig)
    return anim


def plotly_samples_by_steps(samples: dict, ref=None, lim=(-3, 3, -3, 3), height=380, width=980):
    """A plotly figure with a slider over the number of sampling steps: one panel per method.

    ``samples[method][K] = (M, 2)``: the samples of ``method`` after ``K`` steps (every method the
    same ``K`` values, the same starting noise). The slider and the play button are plotly frames,
    so they run in the browser with no kernel. Returns a ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    methods = list(samples)
    ks = list(samples[methods[0]])
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=[f"{m}, {plural(ks[0], 'step')}" for m in methods],
                        horizontal_spacing=0.03)
    ref_np = None if ref is None else _np(ref).astype(np.float32)
    for c, m in enumerate(methods, start=1):
        if ref_np is not None:
            fig.add_trace(go.Scatter(x=ref_np[:, 0], y=ref_np[:, 1], mode="markers", hoverinfo="skip",
                                     marker=dict(size=3, color="rgba(120,120,120,0.35)"), showlegend=False),
                          row=1, col=c)
    sample_traces = []
    for c, m in enumerate(methods, start=1):
        x = _np(samples[m][ks[0]]).astype(np.float32)
        fig.add_trace(go.Scatter(x=x[:, 0], y=x[:, 1], mode="markers", name=m, hoverinfo="skip",
                                 marker=dict(size=4, color=_mpl_to_css(METHOD_COLORS.get(m, "tab:blue")), opacity=0.7),
                                 showlegend=False), row=1, col=c)
        sample_traces.append(len(fig.data) - 1)
    frames = []
    for k in ks:
        data = []
        for m in methods:
            x = _np(samples[m][k]).astype(np.float32)
            data.append(go.Scatter(x=x[:, 0], y=x[:, 1]))
        titles = [dict(text=f"{m}, {plural(k, 'step')}") for m in methods]
        frames.append(go.Frame(name=str(k), data=data, traces=sample_traces,
                               layout=dict(annotations=[{**a.to_plotly_json(), **t}
                                                        for a, t in zip(fig.layout.annotations, titles)])))
    fig.frames = frames
    step_args = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    fig.update_layout(
        height=height, width=width, margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor="white",
        sliders=[dict(active=0, currentvalue=dict(prefix="sampling steps: "), pad=dict(t=10), x=0.07, len=0.93,
                      steps=[dict(label=str(k), method="animate", args=[[str(k)], step_args]) for k in ks])],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.02, xanchor="left", yanchor="top",
                          buttons=[dict(label="▶", method="animate",
                                        args=[None, dict(frame=dict(duration=700, redraw=True), fromcurrent=True,
                                                         transition=dict(duration=0))])])])
    for c in range(1, len(methods) + 1):
        fig.update_xaxes(range=[lim[0], lim[1]], showticklabels=False, showgrid=False, zeroline=False,
                         mirror=True, showline=True, linecolor="black", row=1, col=c)
        fig.update_yaxes(range=[lim[2], lim[3]], showticklabels=False, showgrid=False, zeroline=False,
                         mirror=True, showline=True, linecolor="black", scaleanchor=f"x{'' if c == 1 else c}",
                         row=1, col=c)
    return fig


def _mpl_to_css(color) -> str:
    from matplotlib.colors import to_rgb

    r, g, b = (int(round(255 * v)) for v in to_rgb(color))
    return f"rgb({r},{g},{b})"
