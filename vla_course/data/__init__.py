"""Data: LeRobotDataset recording of SO-100 episodes with per-frame labels (recording.py; durable.py makes finished
episodes survive signals and lets a recording resume), synthetic VQA (vqa.py), training chunks (chunks.py),
localisation labels (localization.py: where the named cube is in each camera) and the recordings cache (cache.py)."""

import logging

# We store camera frames as images, not videos, so LeRobot never needs torchcodec/FFmpeg here:
# silence its warning about a missing FFmpeg shared library.
logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)

from vla_course.data.durable import IncompleteRecording  # noqa: E402
from vla_course.data.recording import (DEFAULT_REPO_ID, RecordingResult, dataset_features, load_dataset,  # noqa: E402
                                       load_subtasks, record_dataset, resume_recording)

__all__ = ["DEFAULT_REPO_ID", "IncompleteRecording", "RecordingResult", "dataset_features", "load_dataset",
           "load_subtasks", "record_dataset", "resume_recording"]
