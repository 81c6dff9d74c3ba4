"""A torch Dataset that decodes audio and extracts features on the fly, in the loader workers."""

from __future__ import annotations

from typing import Any

import datasets
import torch

from asr_finetune.data.audio import AudioError, load_audio
from asr_finetune.data.collators import BAD_ROW_KEY
from asr_finetune.data.features import extract_features
from asr_finetune.errors import DataError


class SpeechDataset(torch.utils.data.Dataset):
    """Rows of a prepared split -> model inputs (and labels when the split has a ``labels`` column).

    Nothing float-sized is cached: each item is decoded, resampled and featurised when asked for,
    so memory does not grow with the corpus and decoding overlaps training when
    ``--dataloader_num_workers`` > 0.
    """

    def __init__(
        self, rows: datasets.Dataset, feature_extractor: Any, audio_column: str, on_bad_row: str = "error"
    ) -> None:
        self.rows = rows
        self.on_bad_row = on_bad_row
        self.feature_extractor = feature_extractor
        self.audio_column = audio_column
        self.input_name = feature_extractor.model_input_names[0]
        self.has_labels = "labels" in rows.column_names
        self.durations: list[float] = list(rows["duration"])
        self.row_ids: list[str] = list(rows["id"])
        self.ids = self.row_ids  # one item per row here; a packed dataset's items are groups of rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        samples = self._decode(index, row[self.audio_column])
        if samples is None:
            return {BAD_ROW_KEY: self.ids[index]}
        sampling_rate = self.feature_extractor.sampling_rate
        features = extract_features(self.feature_extractor, samples, sampling_rate)
        item = {
            self.input_name: features[self.input_name][0],
            "seconds": len(samples) / sampling_rate,
            "id": self.ids[index],
        }
        if self.has_labels:
            item["labels"] = row["labels"]
        return item

    def _decode(self, index: int, source: Any) -> Any:
        """Row ``index``'s audio at the feature extractor's rate; None for a bad row under --on_bad_row skip."""
        try:
            return load_audio(source, self.feature_extractor.sampling_rate)
        except AudioError as err:
            # What the start-up check did not catch (NaN samples without --audio_check full, a file changed since).
            if self.on_bad_row == "skip":
                return None
            raise DataError(
                f"Row {index} ({self.row_ids[index]}): {err} Fix or remove the row, or pass --on_bad_row skip to "
                "skip such rows (counted)."
            ) from None
