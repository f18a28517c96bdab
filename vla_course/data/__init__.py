"""Data: LeRobotDataset recording of SO-100 episodes (and, later, synthetic VQA)."""

from vla_course.data.recording import (DEFAULT_REPO_ID, RecordingResult, dataset_features, load_dataset,
                                       record_dataset)

__all__ = ["DEFAULT_REPO_ID", "RecordingResult", "dataset_features", "load_dataset", "record_dataset"]
