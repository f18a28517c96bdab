"""Videos of rollouts: annotate frames with the instruction and write an mp4 (arrays in, file out)."""

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
