"""Data: LeRobotDataset recording of SO-100 episodes, synthetic VQA (vqa.py), training chunks (chunks.py) and
localisation labels (localization.py: where the named cube is in each camera)."""

import logging

# We store camera frames as images, not videos, so LeRobot never needs torchcodec/FFmpeg here:
# silence its warning about a missing FFmpeg shared library.
logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)

from vla_course.data.recording import (DEFAULT_REPO_ID, RecordingResult, dataset_features, load_dataset,
                                       record_dataset)  # noqa: E402

__all__ = ["DEFAULT_REPO_ID", "RecordingResult", "dataset_features", "load_dataset", "record_dataset"]
