"""Audio decoding without torchcodec: soundfile to read, soxr to resample.

An audio *source* is what a dataset row holds: a file path, a ``{"path", "bytes"}`` dict (datasets'
``Audio(decode=False)``), or an already decoded ``{"array", "sampling_rate"}`` dict.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf
import soxr

AudioSource = str | dict[str, Any]


class AudioError(ValueError):
    """An audio source that cannot be used; the message names it and says why."""


def describe_source(source: AudioSource) -> str:
    """A short human name for an audio source, for error messages."""
    if isinstance(source, str):
        return source
    if isinstance(source, dict):
        if source.get("path"):
            return str(source["path"])
        if source.get("bytes") is not None:
            return f"<{len(source['bytes'])} bytes of embedded audio>"
        if source.get("array") is not None:
            return "<decoded array>"
    return repr(source)[:80]


def _open_target(source: AudioSource) -> Any:
    if isinstance(source, str):
        return source
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            return io.BytesIO(source["bytes"])
        if source.get("path"):
            return source["path"]
    raise AudioError(f"Audio source {describe_source(source)} has neither a path nor bytes.")


@dataclass(frozen=True)
class AudioInfo:
    """What a file header says: enough to filter and batch by duration without decoding."""

    sampling_rate: int
    num_frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.sampling_rate if self.sampling_rate else 0.0


def audio_info(source: AudioSource) -> AudioInfo:
    """Read only the header of an audio source. Raises AudioError naming the source."""
    if isinstance(source, dict) and source.get("array") is not None:
        array = np.asarray(source["array"])
        channels = 1 if array.ndim == 1 else array.shape[0]
        return AudioInfo(int(source["sampling_rate"]), int(array.shape[-1]), channels)
    try:
        info = sf.info(_open_target(source))
    except AudioError:
        raise
    except Exception as err:  # soundfile raises several types for unreadable input
        raise AudioError(f"Cannot read audio {describe_source(source)}: {err}") from err
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels of a (frames, channels) array into one float32 channel."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    return samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr (high quality)."""
    if orig_sr == target_sr:
        return samples
    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(source: AudioSource, target_sr: int) -> np.ndarray:
    """Decode an audio source to mono float32 at ``target_sr``. Raises AudioError naming the source."""
    if isinstance(source, dict) and source.get("array") is not None:
        array = np.asarray(source["array"], dtype=np.float32)
        samples = array if array.ndim == 1 else array.T
        return resample(to_mono(samples), int(source["sampling_rate"]), target_sr)
    try:
        samples, sr = sf.read(_open_target(source), dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as err:
        raise AudioError(f"Cannot decode audio {describe_source(source)}: {err}") from err
    if samples.shape[0] == 0:
        raise AudioError(f"Audio {describe_source(source)} contains no samples.")
    return resample(to_mono(samples), int(sr), target_sr)
