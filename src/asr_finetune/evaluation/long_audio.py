"""Long files transcribed in bounded memory (``asr-transcribe`` on recordings of an hour or more).

A file longer than :data:`LONG_FILE_SECONDS` is never decoded whole: it is read and resampled in blocks
(:func:`asr_finetune.data.audio.audio_blocks`) and fed to the model as it is read.

- A CTC model's waveform is normalised over the whole file, as its feature extractor does: a first pass adds up
  the file's mean and variance, a second feeds the chunked decoding window by window (:class:`StreamedWaveform`).
  Memory stays flat in the file's length.
- Whisper's long-form decoding takes the whole log-mel sequence. Its frames are computed block by block, exactly
  as the feature extractor computes them over the whole file (reflect-padded ends, the file's own maximum):
  only the features grow with length (80 mels x 100 frames/s x 4 bytes, about 115 MB per hour), not the samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile as sf
import torch

from asr_finetune.data.audio import AudioError, audio_blocks

LONG_FILE_SECONDS = 300.0
"""Files longer than this are read in blocks; shorter ones are decoded whole (the same result, a little faster)."""
BLOCK_SECONDS = 30.0


def streamable(feature_extractor: Any) -> bool:
    """True for the feature extractors this module reproduces block by block: a raw waveform (wav2vec2 family)
    or Whisper's log-mel (without per-clip normalisation or dither)."""
    name = feature_extractor.model_input_names[0]
    if name == "input_values":
        return True
    return (name == "input_features" and hasattr(feature_extractor, "n_samples")
            and not getattr(feature_extractor, "do_normalize", False)
            and not getattr(feature_extractor, "dither", 0.0))  # fmt: skip


class LongFile:
    """An audio file to be transcribed in blocks; ``len()`` is its length in samples at the model's rate."""

    def __init__(self, path: str, sampling_rate: int, block_seconds: float = BLOCK_SECONDS) -> None:
        self.path = path
        self.sampling_rate = sampling_rate
        self.block_seconds = block_seconds
        self.samples = 0

    def blocks(self) -> Iterator[np.ndarray]:
        return audio_blocks(self.path, self.sampling_rate, self.block_seconds)

    def __len__(self) -> int:
        return self.samples

    def waveform(self, feature_extractor: Any) -> StreamedWaveform:
        """The input values of a wav2vec2-style model, normalised over the whole file, read window by window."""
        count, total, squares = 0, 0.0, 0.0
        for block in self.blocks():
            count += len(block)
            total += float(block.sum(dtype=np.float64))
            squares += float(np.square(block, dtype=np.float64).sum())
        self.samples = count
        mean, scale = 0.0, 1.0
        if getattr(feature_extractor, "do_normalize", False):
            mean = total / count
            scale = 1.0 / math.sqrt(max(squares / count - mean * mean, 0.0) + 1e-7)
        return StreamedWaveform(self.blocks(), count, mean, scale)

    def whisper_features(self, feature_extractor: Any) -> torch.Tensor:
        """(1, mels, frames) log-mel features of the whole file, as ``feature_extractor`` computes them over it."""
        with sf.SoundFile(self.path) as handle:  # an upper bound on the frames, to fill one array in place
            bound = math.ceil(handle.frames * self.sampling_rate / handle.samplerate) + self.sampling_rate
        features, samples = whisper_log_mel(feature_extractor, self.blocks(), bound)
        self.samples = samples
        return features


class StreamedWaveform:
    """A normalised waveform read on demand: ``w[start:stop]`` (a float32 tensor) for windows whose starts never
    go back, as :func:`asr_finetune.evaluation.longform.ctc_chunked_logits` asks for them."""

    def __init__(self, blocks: Iterator[np.ndarray], length: int, mean: float, scale: float) -> None:
        self._blocks = blocks
        self._length = length
        self._mean, self._scale = np.float32(mean), np.float32(scale)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # the file position of _buffer[0]

    @property
    def shape(self) -> tuple[int]:
        return (self._length,)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, window: slice) -> torch.Tensor:
        start, stop = window.start or 0, min(window.stop if window.stop is not None else self._length, self._length)
        if start < self._offset:
            raise ValueError(f"window from sample {start}: the stream has moved on to {self._offset}")
        while self._offset + len(self._buffer) < stop:
            block = next(self._blocks, None)
            if block is None:
                raise AudioError(f"the file ended before sample {stop} of {self._length}: it changed while read")
            self._buffer = np.concatenate([self._buffer, block])
        self._buffer = self._buffer[start - self._offset :]
        self._offset = start
        values = (self._buffer[: stop - start] - self._mean) * self._scale
        return torch.from_numpy(values.astype(np.float32, copy=False))


def whisper_log_mel(feature_extractor: Any, blocks: Iterator[np.ndarray], bound: int) -> tuple[torch.Tensor, int]:
    """Whisper's log-mel features of the concatenated ``blocks`` (at most ``bound`` samples) and their sample
    count, computed block by block: the frames ``torch.stft`` (centred, reflect-padded) gives over the whole
    signal, less the last, floored at the maximum less 8 and scaled, like ``WhisperFeatureExtractor``."""
    n_fft, hop = feature_extractor.n_fft, feature_extractor.hop_length
    half = n_fft // 2
    window = torch.hann_window(n_fft)
    mel_filters = torch.from_numpy(np.asarray(feature_extractor.mel_filters)).to(torch.float32).T
    features = torch.empty(mel_filters.shape[0], bound // hop + 1)
    filled = 0  # frames written
    padded = np.zeros(0, dtype=np.float32)  # the reflect-padded signal from frame `filled` on
    samples = 0

    def frames(upto: int) -> None:
        nonlocal padded, filled
        if upto <= filled:
            return
        piece = torch.from_numpy(padded[: (upto - filled - 1) * hop + n_fft])
        stft = torch.stft(piece, n_fft, hop, window=window, center=False, return_complex=True)
        log_spec = torch.clamp(mel_filters @ (stft.abs() ** 2), min=1e-10).log10()
        features[:, filled:upto] = log_spec
        padded = padded[(upto - filled) * hop :]
        filled = upto

    started = False
    for block in blocks:
        if not started:
            if len(block) <= half:
                raise AudioError("the first block is shorter than one Whisper frame")
            padded = np.concatenate([block[1 : half + 1][::-1], block])
            started = True
        else:
            padded = np.concatenate([padded, block])
        samples += len(block)
        frames(filled + max(0, (len(padded) - n_fft) // hop + 1))  # every frame the signal so far allows
    if not started:
        raise AudioError("no samples")
    tail = padded[-(half + 1) : -1][::-1]  # reflect at the end: the last half-window's samples, mirrored
    padded = np.concatenate([padded, tail])
    frames(samples // hop)  # torch.stft gives samples // hop + 1 frames; the extractor drops the last
    features = features[:, : samples // hop]
    features.clamp_(min=float(features.max()) - 8.0).add_(4.0).div_(4.0)  # in place: no second copy
    return features[None], samples
