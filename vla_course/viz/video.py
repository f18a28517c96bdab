"""Videos of rollouts: annotate frames, compose the demo's labelled frame, write an mp4 or a small GIF
(arrays in, file out)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np


def annotate(frame: np.ndarray, text: str, footer: str = "", color=(255, 255, 255)) -> np.ndarray:
    """Draw ``text`` on a dark band at the top of ``frame`` (HxWx3 uint8) and ``footer`` at the bottom."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(img, "RGBA")
    size = max(10, img.width // 24)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow
        font = ImageFont.load_default()
    pad = size // 3
    draw.rectangle([0, 0, img.width, size + 2 * pad], fill=(0, 0, 0, 150))
    draw.text((pad, pad), text, fill=color, font=font)
    if footer:
        draw.rectangle([0, img.height - size - 2 * pad, img.width, img.height], fill=(0, 0, 0, 150))
        draw.text((pad, img.height - size - pad), footer, fill=color, font=font)
    return np.asarray(img)


def side_by_side(*frames: np.ndarray) -> np.ndarray:
    """Place frames next to each other, resizing each to the first one's height."""
    from PIL import Image

    h = frames[0].shape[0]
    resized = [f if f.shape[0] == h else np.asarray(Image.fromarray(f).resize((f.shape[1] * h // f.shape[0], h)))
               for f in frames]
    return np.concatenate(resized, axis=1)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow
        return ImageFont.load_default()


def demo_frame(front: np.ndarray, wrist: np.ndarray, instruction: str, policy: str, status: str,
               outcome: str | None = None) -> np.ndarray:
    """The demo video's frame: the instruction in a band on top, the front camera beside the wrist camera (each
    labelled), and a band below naming the policy and the time; ``outcome`` ("success"/"failure") writes the
    result large across the panels (the held last frame)."""
    from PIL import Image, ImageDraw

    panels = side_by_side(front, wrist)
    h, w = panels.shape[:2]
    big, small = max(14, w // 22), max(11, w // 36)
    band_top, band_bottom = big + big // 2 + 4, small + small // 2 + 4
    band_bottom += -(h + band_top + band_bottom) % 8  # video codecs want sizes divisible by 8
    canvas = Image.new("RGB", (w, h + band_top + band_bottom), (20, 20, 20))
    canvas.paste(Image.fromarray(np.ascontiguousarray(panels)), (0, band_top))
    draw = ImageDraw.Draw(canvas, "RGBA")
    draw.text((big // 3, (band_top - big) // 2), f'"{instruction}"', fill=(255, 255, 255), font=_font(big))
    for x, label in ((0, "front camera"), (front.shape[1], "wrist camera")):
        draw.rectangle([x, band_top, x + small * len(label) * 0.62 + 8, band_top + small + 6], fill=(0, 0, 0, 150))
        draw.text((x + 4, band_top + 3), label, fill=(230, 230, 230), font=_font(small))
    draw.text((big // 3, h + band_top + (band_bottom - small) // 2), f"policy: {policy}    {status}",
              fill=(230, 230, 230), font=_font(small))
    if outcome:
        colour = (60, 220, 90) if outcome == "success" else (240, 80, 70)
        size = max(24, w // 9)
        text_w = size * len(outcome) * 0.6
        y = band_top + h // 2 - size // 2
        draw.rectangle([0, y - size // 4, w, y + size + size // 4], fill=(0, 0, 0, 170))
        draw.text(((w - text_w) / 2, y), outcome.upper(), fill=colour, font=_font(size))
    return np.asarray(canvas)


def write_gif(path: str | Path, frames: list[np.ndarray], fps: int, every: int = 3, width: int = 320) -> Path:
    """A small looping GIF of ``frames`` (every ``every``-th frame, resized to ``width`` pixels) for a README."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picked = list(frames[::every])
    if picked[-1] is not frames[-1]:
        picked.append(frames[-1])
    images = []
    for f in picked:
        img = Image.fromarray(np.ascontiguousarray(f))
        images.append(img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
                      .quantize(colors=128, method=Image.Quantize.MEDIANCUT))
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 * every / fps), loop=0,
                   optimize=True)
    return path


def write_video(path: str | Path, frames: list[np.ndarray], fps: int) -> Path:
    """Write frames to an H.264 mp4 (imageio + the ffmpeg binary shipped by imageio-ffmpeg)."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8,
                            ffmpeg_log_level="error") as writer:
        for f in frames:
            writer.append_data(np.asarray(f, dtype=np.uint8))
    return path


def video_html(path: str | Path, width: int = 384) -> str:
    """An HTML <video> with the mp4 embedded as base64, so it plays in a notebook rendered on GitHub-like viewers."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<video width="{width}" controls loop autoplay muted>'
            f'<source src="data:video/mp4;base64,{data}" type="video/mp4"></video>')
