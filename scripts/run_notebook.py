"""Execute notebooks in place, the way they are committed: fresh kernel, top to bottom, then tidy outputs.

    .venv/bin/python scripts/run_notebook.py notebooks/00_the_so100_world.ipynb [more.ipynb ...]

Progress bars write many ``\\r``-separated updates; a saved notebook would show every one of them.
Here consecutive stream outputs of a cell are merged and each ``\\r`` keeps only the latest text,
so GitHub shows the final state of a bar, as Jupyter does live.
"""

import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient


def resolve_carriage_returns(text: str) -> str:
    lines = text.split("\n")
    return "\n".join(re.split(r"\r(?!\n)", line)[-1] if "\r" in line else line for line in lines)


def coalesce_streams(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.outputs:
            if (out.output_type == "stream" and merged and merged[-1].output_type == "stream"
                    and merged[-1].name == out.name):
                merged[-1].text += out.text
            else:
                merged.append(out)
        for out in merged:
            if out.output_type == "stream":
                out.text = resolve_carriage_returns(out.text)
        cell.outputs = merged


def main(paths: list[str]) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
        coalesce_streams(nb)
        nbformat.write(nb, path)
        print(f"{path}: executed in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
