"""Audio decoding without torchcodec: soundfile to read, soxr to resample.

An audio *source* is what a dataset row holds: a file path, a ``{"path", "bytes"}`` dict (datasets'
``Audio(decode=False)``), or an already decoded ``{"array", "sampling_rate"}`` dict.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
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
    if isinstance(source, dict) and source.get("bytes") is not None:
        return io.BytesIO(source["bytes"])
    path = source if isinstance(source, str) else source.get("path") if isinstance(source, dict) else None
    if not path:
        raise AudioError(f"Audio source {describe_source(source)} has neither a path nor bytes.")
    _require_regular_file(path)
    return path


def _require_regular_file(path: str) -> None:
    """Refuse FIFOs, devices, sockets and folders: reading a FIFO blocks forever, a device never ends."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except FileNotFoundError:
        raise AudioError(f"Audio file {path} does not exist.") from None
    except OSError as err:
        raise AudioError(f"Cannot open audio {path}: {err.strerror}.") from err
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a folder" if stat.S_ISDIR(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise AudioError(f"Audio {path} is {kind}, not a regular file: point the row at an audio file.")


@dataclass(frozen=True)
class AudioInfo:
    """What a file header says: enough to filter and batch by duration without decoding."""

    sampling_rate: int
    num_frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.sampling_rate if self.sampling_rate else 0.0


TAIL_FRAMES = 1024
"""Frames read at the end of a file by the start-up check: a file cut short (a FLAC cut in half) fails there."""


def audio_info(source: AudioSource, check_tail: bool = False) -> AudioInfo:
    """Read the header of an audio source (and, with ``check_tail``, its last frames). Raises AudioError naming it.

    The tail read costs one seek and a few kB per file; it catches files whose header promises more audio than
    the file holds, which would otherwise fail only when the loader reaches them mid-run.
    """
    if isinstance(source, dict) and source.get("array") is not None:
        array = np.asarray(source["array"])
        channels = 1 if array.ndim == 1 else array.shape[0]
        return AudioInfo(int(source["sampling_rate"]), int(array.shape[-1]), channels)
    target = _open_target(source)
    try:
        with sf.SoundFile(target) as handle:
            info = AudioInfo(int(handle.samplerate), int(handle.frames), int(handle.channels))
            if check_tail and info.num_frames > 0:
                handle.seek(max(0, info.num_frames - TAIL_FRAMES))
                tail = handle.read(TAIL_FRAMES, dtype="float32")
                if len(tail) == 0:
                    raise AudioError(f"Audio {describe_source(source)} ends before its header says: truncated file.")
    except AudioError:
        raise
    except Exception as err:  # soundfile raises several types for unreadable input
        cut = " (the file looks truncated: it ends before its header says)" if check_tail else ""
        raise AudioError(f"Cannot read audio {describe_source(source)}{cut}: {err}") from err
    return info


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
    """Decode an audio source to mono float32 at ``target_sr``. Raises AudioError naming the source.

    Samples that are NaN or infinite (float WAVs can hold them) are an error: one such clip turns every weight
    of a model into NaN within a step.
    """
    if isinstance(source, dict) and source.get("array") is not None:
        array = np.asarray(source["array"], dtype=np.float32)
        samples, sr = (array if array.ndim == 1 else array.T), int(source["sampling_rate"])
    else:
        target = _open_target(source)
        try:
            samples, sr = sf.read(target, dtype="float32", always_2d=True)
        except Exception as err:
            raise AudioError(f"Cannot decode audio {describe_source(source)}: {err}") from err
    if samples.shape[0] == 0:
        raise AudioError(f"Audio {describe_source(source)} contains no samples.")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - finite.sum())
        raise AudioError(
            f"Audio {describe_source(source)} has {bad} sample(s) that are NaN or infinite: re-export the file "
            "(or remove the row)."
        )
    return resample(to_mono(samples), int(sr), target_sr)


def audio_blocks(source: AudioSource, target_sr: int, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """A file's audio as mono float32 blocks at ``target_sr``, read and resampled piece by piece: memory does not
    grow with the file's length. Raises AudioError naming the source (and the time of a bad sample)."""
    target = _open_target(source)
    name = describe_source(source)
    try:
        handle = sf.SoundFile(target)
    except Exception as err:  # soundfile raises several types for unreadable input
        raise AudioError(f"Cannot decode audio {name}: {err}") from err
    with handle:
        rate = int(handle.samplerate)
        resampler = None if rate == target_sr else soxr.ResampleStream(rate, target_sr, 1, quality="HQ")
        blocks = handle.blocks(blocksize=max(1, int(block_seconds * rate)), dtype="float32", always_2d=True)

        def read() -> np.ndarray | None:
            try:
                return next(blocks, None)
            except Exception as err:
                raise AudioError(f"Cannot decode audio {name} after {read_frames / rate:.1f} s: {err}") from err

        read_frames = 0
        pending = read()
        while pending is not None:
            following = read()
            mono = to_mono(pending)
            if not np.isfinite(mono).all():
                raise AudioError(f"Audio {name} has samples that are NaN or infinite (after {read_frames / rate:.1f} "
                                 "s): re-export the file (or remove the row).")
            read_frames += len(mono)
            out = resampler.resample_chunk(mono, last=following is None) if resampler else mono
            if len(out):
                yield out
            pending = following
        if read_frames == 0:
            raise AudioError(f"Audio {name} contains no samples.")
