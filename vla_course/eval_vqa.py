"""Held-out VQA evaluation: exact match of the greedy answer, overall and per question kind.

    >>> from vla_course.checkpoints import load_pretrained
    >>> from vla_course.data.vqa import generate_vqa
    >>> scores = evaluate_vqa(load_pretrained("vlm_base"), generate_vqa(100, split="heldout", progress=False))
    >>> scores["overall"] > 0.9, sorted(scores["per_kind"])[:2]
    (True, ['bin_colour', 'caption'])
"""

from __future__ import annotations

import numpy as np


def normalise_answer(text: str) -> str:
    """Lower-case, single spaces: the form both the labels and ``generate`` produce."""
    return " ".join(str(text).lower().split())


def predict_vqa(model, dataset, batch_size: int = 256, max_new_tokens: int = 8, progress: bool = False,
                ) -> list[str]:
    """The model's greedy answer to every question of ``dataset`` (in order)."""
    import torch
    from tqdm import tqdm  # a text bar: saved notebooks show its final state, not a stale "0%" widget

    was_training = model.training
    model.eval()
    preds: list[str] = []
    starts = range(0, len(dataset), batch_size)
    try:
        with torch.inference_mode():
            for s in tqdm(starts, desc="answering", disable=not progress):
                batch = dataset.batch(np.arange(s, min(s + batch_size, len(dataset))))
                preds.extend(model.generate(batch, max_new_tokens=max_new_tokens))
    finally:
        model.train(was_training)
    return preds


def evaluate_vqa(model, dataset, batch_size: int = 256, progress: bool = False,
                 predictions: list[str] | None = None) -> dict:
    """Exact-match accuracy of the model's greedy answers on ``dataset``.

    Returns ``{"overall": float, "per_kind": {kind: float}, "num_questions": int,
    "num_scenes": int, "predictions": list[str]}``. An answer counts only if every word
    matches (a caption with one cube out of order is wrong).
    """
    preds = predictions if predictions is not None else predict_vqa(model, dataset, batch_size, progress=progress)
    if len(preds) != len(dataset):
        raise ValueError(f"{len(preds)} predictions for {len(dataset)} questions")
    correct = np.array([normalise_answer(p) == normalise_answer(a) for p, a in zip(preds, dataset.answers)])
    kinds = np.array(dataset.kinds)
    per_kind = {str(k): float(correct[kinds == k].mean()) for k in dict.fromkeys(dataset.kinds)}
    return {"overall": float(correct.mean()), "per_kind": per_kind, "num_questions": int(len(dataset)),
            "num_scenes": int(dataset.num_scenes), "predictions": list(preds)}
