"""Transcribe files, folders or manifests with a fine-tuned model: txt, JSON or SRT, progress, real-time factor.

``asr-transcribe`` (:mod:`asr_finetune.cli.transcribe`) runs it. Decoding is
:mod:`asr_finetune.evaluation.longform`'s, the code evaluation uses, so recordings of any length are transcribed
whole. A file that cannot be read is reported on one line and skipped; the run goes on and exits with status 1
at the end, saying how many failed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForCTC, AutoModelForSpeechSeq2Seq

from asr_finetune.data.audio import AudioError, audio_info, load_audio
from asr_finetune.data.local import MANIFEST_SUFFIXES, read_manifest
from asr_finetune.errors import UsageError
from asr_finetune.evaluation.lm_decoding import load_processor
from asr_finetune.evaluation.long_audio import LONG_FILE_SECONDS, LongFile, streamable
from asr_finetune.evaluation.longform import Timed, Transcript, transcribe, transcribe_timed
from asr_finetune.files import atomic_write_text, write_json
from asr_finetune.models.feature_encoder import speed_up_feature_encoders
from asr_finetune.models.loading import dtype_kwargs, refuse_training_only_checkpoint, weights_dtype

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64")
"""What a folder input is searched for (recursively): the formats soundfile (libsndfile) reads."""
OUTPUT_FORMATS = ("txt", "json", "srt")
CUE_GAP_S = 0.8
CUE_MAX_S = 6.0
CUE_MAX_WORDS = 12


@dataclass(frozen=True)
class AudioInput:
    """A file to transcribe, and the name its output takes under ``--output_dir`` (suffix replaced)."""

    path: Path
    name: Path


def find_inputs(inputs: Sequence[str], audio_column: str = "audio") -> list[AudioInput]:
    """Files as given; folders searched recursively for audio files (outputs keep the sub-folders); manifests
    (.jsonl/.json/.csv/.tsv, as the training scripts read them) for their audio column, paths relative to the
    manifest. Two inputs that would write the same output are refused, as is an input that is none of these."""

    found: list[AudioInput] = []
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            # not only regular files: a FIFO or a dangling link with an audio name is reported and counted as failed
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and not p.is_dir())
            if not files:
                raise UsageError(f"{given}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder.")
            found += [AudioInput(p, p.relative_to(path)) for p in files]
        elif path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            for row in read_manifest(path, audio_column):
                value = row.get(audio_column)
                if not isinstance(value, str) or not value:
                    raise UsageError(f"{given}: a row has no audio path in column {audio_column!r} "
                                     "(--audio_column_name to choose another).")  # fmt: skip
                audio = Path(value)
                base = path.parent.resolve()
                found.append(
                    AudioInput(audio, audio.relative_to(base) if audio.is_relative_to(base) else Path(audio.name))
                )
        else:  # a file, or a path that is not there: reported (and counted) when it is read
            found.append(AudioInput(path, Path(path.name)))
    seen: dict[Path, Path] = {}
    for item in found:
        key = item.name.with_suffix("")
        if key in seen and seen[key] != item.path:
            raise UsageError(f"{seen[key]} and {item.path} would both write {key}.*: pass them in separate runs "
                             "or give their folder instead.")  # fmt: skip
        seen[key] = item.path
    if not found:
        raise UsageError("No input given: name audio files, folders or manifests.")
    return found


# ---------------------------------------------------------------------------------------------- output dir

WRITTEN_LIST = ".asr-transcribe-outputs.json"
"""In ``--output_dir``: the files asr-transcribe wrote there, the only existing files a later run may replace."""


def prepare_output_dir(output_dir: Path, inputs: Sequence[AudioInput], output_format: str) -> list[Path]:
    """Check at start that ``output_dir`` can be written and that no output would replace a file asr-transcribe did
    not write there (a model's config.json, say); returns the output paths, in input order."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".asr-transcribe-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"--output_dir {output_dir}: cannot write there ({err.strerror or err}). Choose a folder "
                         "you can write to.") from err  # fmt: skip
    ours = _written(output_dir)
    targets = [output_dir / item.name.with_suffix(f".{output_format}") for item in inputs]
    for item, target in zip(inputs, targets, strict=True):
        if target.exists() and str(target.relative_to(output_dir)) not in ours:
            raise UsageError(f"{item.path} would write {target}, which exists and was not written by asr-transcribe. "
                             "Choose another --output_dir (this one holds other files, e.g. a model).")  # fmt: skip
    # Listed once, before any is written, so a rerun may replace each of them.
    names = [str(target.relative_to(output_dir)) for target in targets]
    write_json([*ours, *(name for name in dict.fromkeys(names) if name not in ours)], output_dir / WRITTEN_LIST)
    return targets


def _written(output_dir: Path) -> list[str]:
    try:
        names = json.loads((output_dir / WRITTEN_LIST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


# ---------------------------------------------------------------------------------------------- formats


def cues(transcript: Any) -> list[Any]:
    """Subtitle cues: Whisper's segments; a CTC model's words grouped at pauses over ``CUE_GAP_S``, or after
    ``CUE_MAX_WORDS`` words or ``CUE_MAX_S`` seconds."""

    if transcript.segments or not transcript.words:
        return list(transcript.segments)
    groups: list[list[Any]] = [[]]
    for word in transcript.words:
        group = groups[-1]
        if group and (word.start - group[-1].end > CUE_GAP_S or len(group) >= CUE_MAX_WORDS
                      or word.end - group[0].start > CUE_MAX_S):  # fmt: skip
            groups.append(group := [])
        group.append(word)
    return [Timed(g[0].start, g[-1].end, " ".join(w.text for w in g)) for g in groups if g]


def srt_time(seconds: float) -> str:
    """SRT's ``HH:MM:SS,mmm``."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def to_srt(transcript: Any) -> str:
    """Numbered SRT cues (an empty transcript gives an empty file)."""
    blocks = [f"{n}\n{srt_time(c.start)} --> {srt_time(c.end)}\n{c.text}\n" for n, c in
              enumerate(cues(transcript), start=1)]  # fmt: skip
    return "\n".join(blocks)


def to_json(transcript: Any, path: Path, duration: float, seconds: float) -> dict[str, Any]:
    """The JSON record of one file: text, segments (cues), words (CTC), duration and real-time factor."""
    record: dict[str, Any] = {
        "file": str(path),
        "text": transcript.text,
        "duration": round(duration, 3),
        "seconds": round(seconds, 3),
        "real_time_factor": round(seconds / duration, 4) if duration else None,
        "segments": [asdict(c) for c in cues(transcript)],
    }
    if transcript.words:
        record["words"] = [asdict(w) for w in transcript.words]
    return record


def render(output_format: str, transcript: Any, path: Path, duration: float, seconds: float) -> str:
    """The text of one output file."""
    if output_format == "txt":
        return transcript.text + "\n"
    if output_format == "srt":
        return to_srt(transcript)
    return json.dumps(to_json(transcript, path, duration, seconds), ensure_ascii=False, indent=1) + "\n"


def stdout_form(output_format: str, text: str, transcript: Any, path: Path, duration: float, seconds: float) -> str:
    """What is printed without ``--output_dir``: ``path<TAB>text`` lines (txt), JSON Lines (json), or each file's
    SRT after a ``==> path <==`` line (srt)."""
    if output_format == "txt":
        return f"{path}\t{transcript.text}\n"
    if output_format == "json":
        return json.dumps(to_json(transcript, path, duration, seconds), ensure_ascii=False) + "\n"
    return f"==> {path} <==\n{text}\n"


# ---------------------------------------------------------------------------------------------- model


class Transcriber:
    """A model directory (or Hub id) loaded for inference, CTC or seq2seq, in float32 unless told otherwise."""

    def __init__(self, model: str, torch_dtype: str | None = None, num_beams: int | None = None) -> None:
        refuse_training_only_checkpoint(model)
        try:
            config = AutoConfig.from_pretrained(model)
        except (OSError, ValueError) as err:
            raise UsageError(f"--model {model}: not a model directory ({str(err).splitlines()[0][:160]}). Point it at "
                             "the output_dir of a fine-tuning run.") from err  # fmt: skip
        seq2seq = getattr(config, "is_encoder_decoder", False)
        model_class = AutoModelForSpeechSeq2Seq if seq2seq else AutoModelForCTC
        self.model = model_class.from_pretrained(model, **dtype_kwargs(weights_dtype(torch_dtype, training=False)))
        speed_up_feature_encoders(self.model, self.model.device.type)
        self.processor = load_processor(model)
        feature_extractor = getattr(self.processor, "feature_extractor", self.processor)
        self.sampling_rate = feature_extractor.sampling_rate
        self.streamable = streamable(feature_extractor)
        self.generation = {"num_beams": num_beams} if num_beams else {}

    def read(self, path: str, long_file_seconds: float = LONG_FILE_SECONDS) -> np.ndarray | LongFile:
        """The file decoded whole, or, when longer than ``long_file_seconds`` (and the model's features can be
        computed block by block), a :class:`LongFile` read in blocks as it is transcribed."""
        if self.streamable and audio_info(path).duration > long_file_seconds:
            return LongFile(path, self.sampling_rate)
        return load_audio(path, self.sampling_rate)

    def __call__(self, samples: Any, timed: bool) -> Any:
        """A :class:`asr_finetune.evaluation.longform.Transcript` of one decoded clip; ``timed``: with timestamps."""
        if timed:
            return transcribe_timed(self.model, self.processor, samples, **self.generation)
        return Transcript(transcribe(self.model, self.processor, samples, **self.generation))


ENGINES = ("transformers", "ctranslate2", "onnx")


def make_transcriber(model: str, engine: str = "transformers", torch_dtype: str | None = None,
                     num_beams: int | None = None) -> Any:
    """The transcriber of ``engine``: transformers (any output dir or Hub id), or an export of ``asr-export``."""
    if engine == "transformers":
        return Transcriber(model, torch_dtype, num_beams)
    from asr_finetune.evaluation import engines

    if torch_dtype not in (None, "float32", "auto"):
        raise UsageError(f"--torch_dtype {torch_dtype} is for --engine transformers (an export has its own types).")
    if engine == "ctranslate2":
        return engines.CTranslate2Whisper(model, num_beams)
    if num_beams:
        raise UsageError("--num_beams is for seq2seq models; --engine onnx runs CTC models.")
    return engines.OnnxCTC(model)


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Totals:
    """What a run did: files done and failed, audio seconds, seconds spent transcribing."""

    done: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0

    def summary(self) -> str:
        speed = (f", real-time factor {self.seconds / self.audio_seconds:.3f} "
                 f"({self.audio_seconds / self.seconds:.1f}x faster than real time)"
                 if self.audio_seconds and self.seconds else "")  # fmt: skip
        failed = f"; {self.failed} file(s) failed (listed above)" if self.failed else ""
        return (f"Transcribed {self.done} of {self.done + self.failed} file(s): {self.audio_seconds:.1f} s of audio "
                f"in {self.seconds:.1f} s{speed}{failed}.")  # fmt: skip


def transcribe_all(
    transcriber: Transcriber,
    inputs: Sequence[AudioInput],
    output_format: str,
    output_dir: Path | None,
    out: TextIO,
    err: TextIO,
    progress: bool = True,
) -> Totals:
    """Transcribe each input; write ``output_dir/<name>.<format>`` (or print to ``out``); a file that cannot be
    read or decoded is reported on ``err`` and skipped."""
    totals = Totals()
    bar = tqdm(inputs, desc="transcribing", unit="file", disable=not progress, file=err)
    for item in bar:
        bar.set_postfix_str(item.path.name)
        try:
            samples = transcriber.read(str(item.path))
        except AudioError as error:
            totals.failed += 1
            bar.write(f"{item.path}\tERROR: {error} Skipped.", file=err)
            continue
        started = time.perf_counter()
        try:
            transcript = transcriber(samples, timed=output_format != "txt")
        except AudioError as error:  # a long file read in blocks, found bad part-way
            totals.failed += 1
            bar.write(f"{item.path}\tERROR: {error} Skipped.", file=err)
            continue
        except (RuntimeError, ValueError) as error:  # e.g. a clip shorter than the model's receptive field
            totals.failed += 1
            bar.write(f"{item.path}\tERROR: the model cannot transcribe it ({error}). Skipped.", file=err)
            continue
        seconds = time.perf_counter() - started
        duration = len(samples) / transcriber.sampling_rate
        totals.done += 1
        totals.audio_seconds += duration
        totals.seconds += seconds
        text = render(output_format, transcript, item.path, duration, seconds)
        if output_dir is None:
            out.write(stdout_form(output_format, text, transcript, item.path, duration, seconds))
            out.flush()
        else:
            target = output_dir / item.name.with_suffix(f".{output_format}")
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, text)
    return totals
