from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_finetune.data.audio import AudioError, audio_info, load_audio

from conftest import sox


def test_header_duration_matches_decoded_length(speech_wav: Path) -> None:
    info = audio_info(str(speech_wav))
    decoded = load_audio(str(speech_wav), 16_000)
    assert info.sampling_rate == 22_050
    assert abs(len(decoded) / 16_000 - info.duration) < 0.01


def test_stereo_44k_is_downmixed_and_resampled(speech_wav: Path, tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.wav"
    sox(speech_wav, "-r", "44100", "-c", "2", stereo)
    assert audio_info(str(stereo)).channels == 2
    samples = load_audio(str(stereo), 16_000)
    reference = load_audio(str(speech_wav), 16_000)
    assert samples.ndim == 1 and samples.dtype == np.float32
    assert abs(len(samples) - len(reference)) <= 16
    n = min(len(samples), len(reference))
    assert np.corrcoef(samples[:n], reference[:n])[0, 1] > 0.95


def test_8khz_is_upsampled(speech_wav: Path, tmp_path: Path) -> None:
    low = tmp_path / "low.wav"
    sox(speech_wav, "-r", "8000", low)
    samples = load_audio(str(low), 16_000)
    assert abs(len(samples) / 16_000 - audio_info(str(low)).duration) < 0.01


@pytest.mark.parametrize("suffix", ["flac", "mp3", "ogg"])
def test_compressed_formats_decode(speech_wav: Path, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"clip.{suffix}"
    sox(speech_wav, path)
    samples = load_audio(str(path), 16_000)
    assert abs(len(samples) / 16_000 - audio_info(str(speech_wav)).duration) < 0.1
    assert np.abs(samples).max() > 0.05


def test_embedded_bytes_decode_like_the_file(speech_wav: Path) -> None:
    from_bytes = load_audio({"bytes": speech_wav.read_bytes(), "path": None}, 16_000)
    np.testing.assert_allclose(from_bytes, load_audio(str(speech_wav), 16_000))


def test_decoded_array_source_is_resampled() -> None:
    source = {"array": np.zeros((2, 8000), dtype=np.float32), "sampling_rate": 8000}
    assert load_audio(source, 16_000).shape == (16_000,)
    assert audio_info(source).duration == 1.0


def test_unreadable_file_error_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "not_audio.wav"
    bad.write_text("this is not audio")
    with pytest.raises(AudioError, match="not_audio.wav"):
        audio_info(str(bad))
    with pytest.raises(AudioError, match="not_audio.wav"):
        load_audio(str(bad), 16_000)


def test_empty_file_error_names_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    assert audio_info(str(empty)).num_frames == 0
    with pytest.raises(AudioError, match="empty.wav.*no samples"):
        load_audio(str(empty), 16_000)


def test_missing_file_error_names_it(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="nowhere.wav"):
        audio_info(str(tmp_path / "nowhere.wav"))
