"""Animations and interactive figures that keep working without a kernel, and without a network.

A notebook here is read in three places: Jupyter (live or not), an HTML export, and GitHub's
notebook viewer, which runs no JavaScript. Each helper says where its output plays.

* :func:`jshtml`: matplotlib's JavaScript player (``Animation.to_jshtml``) with its buttons drawn
  as inline SVG. Matplotlib's own player loads Font Awesome from a CDN for the button icons, so
  offline its buttons are blank; this one needs no network. Plays in Jupyter (in a trusted
  notebook) and in an HTML export; GitHub strips its script.
* :func:`to_gif` and :func:`gif_html`: the same frames as an animated GIF, embedded as an HTML
  ``<img>`` with a ``data:image/gif`` URI. That plays everywhere, GitHub included: GitHub's
  viewer does not render a bare ``image/gif`` output (``IPython.display.Image(format="gif")``),
  but it does render an ``<img>`` in an HTML output (reported in
  https://github.com/jsboige/CoursIA/pull/16577; nbconvert also lacks ``image/gif``:
  https://github.com/jupyter/nbconvert/issues/2270).
* :func:`gif_strip`: a few of those frames side by side as one PNG, the still that every viewer shows (put it
  beside the animation too: if a viewer drops the ``<img>``, the strip still tells the story).
* :func:`plotly_bundle`: a plotly figure as a display bundle with the plotly MIME type (Jupyter's
  plotly extension draws it from the saved notebook, no kernel, no network) and an HTML version
  for exports (it loads plotly.js from plotly's CDN: online only). GitHub shows neither, so put a
  static image beside it.
"""

from __future__ import annotations

import base64
import io
import os
import re
import tempfile

import numpy as np
from matplotlib import animation

# 12x12 SVG icons for the player's buttons (Font Awesome class -> path), filled with the text colour.
_ICONS = {
    "fa fa-minus": "M2 5h8v2H2z",
    "fa fa-plus": "M2 5h8v2H2zM5 2h2v8H5z",
    "fa fa-fast-backward": "M1 2h2v8H1zM7 2v8L3 6zM11 2v8L7 6z",
    "fa fa-step-backward": "M2 2h2v8H2zM10 2v8L4 6z",
    "fa fa-play fa-flip-horizontal": "M10 2v8L3 6z",
    "fa fa-pause": "M3 2h2v8H3zM7 2h2v8H7z",
    "fa fa-play": "M3 2v8l7-4z",
    "fa fa-step-forward": "M8 2h2v8H8zM2 2v8l6-4z",
    "fa fa-fast-forward": "M9 2h2v8H9zM1 2v8l4-4zM5 2v8l4-4z",
}


def _svg(path: str) -> str:
    return (f'<svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" '
            f'style="vertical-align:middle"><path fill="currentColor" d="{path}"/></svg>')


def jshtml(anim: animation.Animation, **kwargs) -> str:
    """``anim.to_jshtml(**kwargs)`` with no network access: the CDN stylesheet link removed and the
    Font Awesome icons replaced by inline SVG. Raises if matplotlib's template changed so that an
    icon or the link can no longer be found (rather than silently leaving a blank button)."""
    html = anim.to_jshtml(**kwargs)
    html, n_links = re.subn(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">', "", html)
    found = 0
    for cls, path in _ICONS.items():
        html, n = re.subn(rf'<i class="{re.escape(cls)}"></i>', _svg(path), html)
        found += n > 0
    if n_links != 1 or found != len(_ICONS) or "<i class=\"fa" in html or "://" in re.sub(r"data:[^\"]*", "", html):
        raise RuntimeError("matplotlib's to_jshtml template changed: update vla_course.viz.anim.jshtml")
    return html


class GifWriter(animation.AbstractMovieWriter):
    """Collects the frames of an animation and writes one small animated GIF (Pillow).

    Each frame gets an adaptive palette of ``colors`` colours, without dithering, and the last frame
    is held for ``hold_last_s`` seconds so that the final state can be read before the loop restarts.
    """

    def __init__(self, fps: float = 2.5, colors: int = 64, hold_last_s: float = 1.5):
        super().__init__(fps=fps)
        self.colors, self.hold_last_s = colors, hold_last_s
        self._frames: list = []

    def setup(self, fig, outfile, dpi=None):
        super().setup(fig, outfile, dpi=dpi)
        self._frames = []

    def grab_frame(self, **savefig_kwargs):
        from PIL import Image

        buf = io.BytesIO()
        self.fig.savefig(buf, **{**savefig_kwargs, "format": "rgba", "dpi": self.dpi})
        self._frames.append(Image.frombuffer("RGBA", self.frame_size, buf.getbuffer(), "raw", "RGBA", 0, 1)
                            .convert("RGB"))

    def finish(self):
        from PIL import Image

        # each frame its own adaptive palette (a colour used in one frame only, such as a highlight
        # in the last frame, keeps its colour), no dithering: flat plot colours compress well
        frames_p = [f.quantize(colors=self.colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
                    for f in self._frames]
        step_ms = int(round(1000 / self.fps))
        durations = [step_ms] * len(frames_p)
        durations[-1] += int(1000 * self.hold_last_s)
        frames_p[0].save(self.outfile, save_all=True, append_images=frames_p[1:], duration=durations,
                         loop=0, optimize=True, disposal=1)


def to_gif(anim: animation.Animation, fps: float | None = None, dpi: float | None = None,
           colors: int = 64, hold_last_s: float = 1.5) -> bytes:
    """The frames of ``anim`` as animated-GIF bytes (``fps`` defaults to the animation's interval)."""
    if fps is None:
        fps = 1000.0 / getattr(anim, "_interval", 200)
    fd, path = tempfile.mkstemp(suffix=".gif")
    os.close(fd)
    try:
        anim.save(path, writer=GifWriter(fps=fps, colors=colors, hold_last_s=hold_last_s), dpi=dpi)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.remove(path)


def gif_html(gif: bytes, alt: str = "animation", width: int | None = None) -> str:
    """An ``<img>`` holding the GIF as a data URI: renders in Jupyter and in HTML exports (GitHub drops it)."""
    size = f' width="{width}"' if width else ""
    return f'<img src="data:image/gif;base64,{base64.b64encode(gif).decode()}" alt="{alt}"{size}>'


def gif_output(gif: bytes, alt: str = "animation", width: int | None = None) -> dict:
    """One output holding the GIF twice, ``display(gif_output(gif), raw=True)``: as ``image/gif``, which GitHub's
    notebook view renders, and as :func:`gif_html`, which Jupyter and HTML exports render; each reader picks one."""
    return {"image/gif": base64.b64encode(gif).decode(), "text/html": gif_html(gif, alt, width)}


def keep_gif(gif: bytes, path) -> bool:
    """Write ``gif`` to ``path`` unless the file already holds exactly these bytes; True if it wrote.

    GitHub drops an ``<img>`` whose source is a data URI from a notebook's outputs, so a notebook also commits its
    GIF beside it and shows it from a markdown cell (``![...](figures/name.gif)``), which GitHub renders. A re-run
    that makes the same frames leaves the file, and the checkout, untouched."""
    from pathlib import Path

    path = Path(path)
    if path.exists() and path.read_bytes() == gif:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gif)
    return True


def gif_strip(gif: bytes, n: int = 5, height: int | None = None) -> bytes:
    """``n`` evenly spaced frames of a GIF (first and last included) side by side, as PNG bytes: the still that
    renders in every viewer, GitHub's included, beside an animation (``IPython.display.Image(data=...)``)."""
    import io

    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(gif)) as im:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(im)]
    pick = [frames[round(k * (len(frames) - 1) / max(1, n - 1))] for k in range(min(n, len(frames)))]
    if height:
        pick = [f.resize((round(f.width * height / f.height), height)) for f in pick]
    strip = Image.new("RGB", (sum(f.width for f in pick), max(f.height for f in pick)), "white")
    x = 0
    for f in pick:
        strip.paste(f, (x, 0))
        x += f.width
    out = io.BytesIO()
    strip.save(out, format="PNG", optimize=True)
    return out.getvalue()


def plotly_bundle(fig, html: bool = True) -> dict:
    """A plotly figure as a MIME bundle for ``IPython.display.display(bundle, raw=True)``.

    ``application/vnd.plotly.v1+json`` is drawn by Jupyter's plotly extension straight from the
    saved notebook (no kernel, no network); ``text/html`` (when ``html``) is for HTML exports and
    loads plotly.js from plotly's CDN, so it needs a network. No JavaScript library is embedded:
    plotly.js alone is about 5 MB.
    """
    import plotly.io as pio

    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    if html:
        bundle["text/html"] = pio.to_html(fig, include_plotlyjs="cdn", full_html=False,
                                          config={"displaylogo": False})
    bundle["text/plain"] = f"<plotly figure: {len(fig.data)} traces, {len(fig.frames)} frames>"
    return bundle
