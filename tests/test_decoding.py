"""One decoding everywhere, on the real Whisper tiny.en: what evaluation reports is what the saved model gives in
transformers' pipeline() and in asr-transcribe, and a looping decoder stops at a cap tied to the clip's duration."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile
import transformers
from transformers import AutoTokenizer, GenerationConfig, pipeline

from asr_finetune.cli.seq2seq import main
from asr_finetune.data.audio import load_audio
from asr_finetune.evaluation.decoding import capped, token_cap

from conftest import REPO


def whisper_run(model: Path, corpus: Path, output_dir: Path, *extra: str) -> dict:
    return main([
        "--model_name_or_path", str(model), "--dataset_name", str(corpus), "--output_dir", str(output_dir),
        "--eval_split_name", "test", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2",
        "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true", "--predict_with_generate",
        "--max_eval_samples", "4", *extra,
    ])  # fmt: skip


def predictions(output_dir: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()]
    return {row["id"]: row["output"] for row in rows}


def clip(corpus: Path, utterance: str) -> Path:
    return corpus / "test" / f"{Path(utterance).stem}.wav"


def seconds(path: Path) -> float:
    return soundfile.info(str(path)).duration


def transcribe_cli(model: Path, files: list[Path], output_dir: Path) -> dict[str, str]:
    subprocess.run([sys.executable, str(REPO / "scripts" / "transcribe.py"), "--model", str(model),
                    "--output_dir", str(output_dir), *map(str, files)], check=True, capture_output=True)  # fmt: skip
    return {path.stem: (output_dir / f"{path.stem}.txt").read_text().strip() for path in files}


def test_the_cap_grows_with_the_clip_and_never_exceeds_what_was_asked() -> None:
    class Model:
        generation_config = GenerationConfig(max_length=448)

    assert token_cap(2.0) == 30 and token_cap(30.0) == 310
    assert capped({}, 2.0, Model())["max_new_tokens"] == 30
    assert capped({"max_length": 20}, 2.0, Model()) == {"max_new_tokens": 20}  # the smaller limit wins
    assert capped({"max_new_tokens": 100, "num_beams": 2}, 30.0, Model()) == {"max_new_tokens": 100, "num_beams": 2}


def test_a_greedy_model_is_decoded_with_five_beams_by_pipeline_unless_told(
    real_whisper: Path, words_corpus: Path
) -> None:
    # Why the README tells pipeline() users of a greedily evaluated model to pass num_beams 1: the ASR pipeline fills
    # what the model's generation_config leaves at the library default with its own (5 beams), and 1 beam is that
    # default, so no saved file can say it.
    asr = pipeline("automatic-speech-recognition", model=str(real_whisper))
    samples = load_audio(str(clip(words_corpus, "test_000001")), 16_000)

    def text(**kwargs: dict) -> str:
        return asr({"raw": samples, "sampling_rate": 16_000}, **kwargs)["text"]  # the pipeline empties the dict

    greedy = text(generate_kwargs={"num_beams": 1})
    assert text() == text(generate_kwargs={"num_beams": 5}) != greedy


def test_evaluation_pipeline_and_asr_transcribe_agree_on_the_saved_model(
    real_whisper: Path, words_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ft"
    # The reference scripts' trap: the model says one beam count, evaluation decodes with another.
    whisper_run(real_whisper, words_corpus, out, "--do_train", "--do_eval", "--max_steps", "1", "--learning_rate",
                "1e-6", "--generation_num_beams", "2", "--freeze_encoder")  # fmt: skip
    assert GenerationConfig.from_pretrained(out).num_beams == 2  # saved as evaluated
    assert 'print(asr("clip.wav")["text"])' in (out / "README.md").read_text()  # 2 beams: the pipeline reads them
    evaluated = predictions(out)
    assert len(evaluated) == 4 and all(evaluated.values())

    asr = pipeline("automatic-speech-recognition", model=str(out))
    # transformers 4.x's ASR pipeline decodes with its own 5 beams whatever the model says; 5.x reads the model's.
    told = {"generate_kwargs": {"num_beams": 2}} if int(transformers.__version__.split(".")[0]) < 5 else {}
    files = [clip(words_corpus, utterance) for utterance in sorted(evaluated)]
    piped = {path.stem: asr({"raw": load_audio(str(path), 16_000), "sampling_rate": 16_000}, **told)["text"].strip()
             for path in files}  # fmt: skip
    evaluated = {clip(words_corpus, utterance).stem: text for utterance, text in evaluated.items()}
    assert piped == evaluated
    assert transcribe_cli(out, files, tmp_path / "texts") == evaluated


def test_a_looping_decoder_stops_at_the_duration_cap(real_whisper: Path, words_corpus: Path, tmp_path: Path) -> None:
    looping = tmp_path / "looping"
    subprocess.run(["cp", "-r", str(real_whisper), str(looping)], check=True)
    generation = GenerationConfig.from_pretrained(looping)
    eos = generation.eos_token_id
    generation.suppress_tokens = [*(generation.suppress_tokens or []), eos]  # it can never end a hypothesis
    generation.save_pretrained(looping)

    started = time.perf_counter()
    results = whisper_run(looping, words_corpus, tmp_path / "eval", "--do_eval")
    seconds_taken = time.perf_counter() - started
    card = (tmp_path / "eval" / "README.md").read_text()
    assert 'asr("clip.wav", generate_kwargs={"num_beams": 1})' in card  # greedy: the card tells pipeline users
    assert results["eval_hypotheses_cut"] == 4  # all four still going at the cap, and said so
    tokenizer = AutoTokenizer.from_pretrained(str(looping))
    files = [clip(words_corpus, utterance) for utterance in predictions(tmp_path / "eval")]
    longest = max(map(seconds, files))
    for text in predictions(tmp_path / "eval").values():
        assert len(tokenizer(text, add_special_tokens=False).input_ids) <= token_cap(longest) + 1
    assert seconds_taken < 120, f"four 2-4 s clips took {seconds_taken:.0f} s to evaluate"

    one = files[0]
    text = transcribe_cli(looping, [one], tmp_path / "texts")[one.stem]
    assert 0 < len(tokenizer(text, add_special_tokens=False).input_ids) <= token_cap(seconds(one)) + 1


@pytest.mark.parametrize("beams", [1, 3])
def test_the_cut_count_is_per_clip_with_beams(beams: int) -> None:
    import torch

    from asr_finetune.evaluation.decoding import CutCount

    counter = CutCount(max_new_tokens=3, stop_ids=[9], beams=beams)
    rows = 2 * beams  # two clips; the first clip's beams all end, the second's never do
    ids = torch.zeros(rows, 1, dtype=torch.long)
    for step in range(3):
        token = torch.tensor([9 if row < beams and step == 1 else 5 for row in range(rows)])
        ids = torch.cat([ids, token[:, None]], dim=1)
        assert not counter(ids, None).any()
    assert counter.cut == 1
