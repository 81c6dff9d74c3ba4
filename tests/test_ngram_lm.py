"""n-gram LM decoding for CTC (issue 26): KenLM's lmplz builds it, pyctcdecode decodes with it, the output dir
carries it as a Wav2Vec2ProcessorWithLM that pipeline() uses."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from test_faults import ctc_args
from transformers import Wav2Vec2CTCTokenizer, pipeline

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.errors import UsageError
from asr_finetune.evaluation import ngram_lm
from asr_finetune.evaluation.lm_decoding import beam_decode, ctc_alphabet, make_decoder, tune_weights
from asr_finetune.evaluation.ngram_lm import build_ngram_lm, require_decoder

VOCAB = {"[PAD]": 0, "[UNK]": 1, "|": 2, "e": 3, "h": 4, "r": 5, "t": 6, "i": 7, "g": 8, "s": 9, "x": 10}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Wav2Vec2CTCTokenizer:
    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    path.write_text(json.dumps(VOCAB))
    return Wav2Vec2CTCTokenizer(str(path), unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|",
                                bos_token=None, eos_token=None)  # fmt: skip


@pytest.fixture(scope="module")
def digits_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ngram_lm(["three eight six", "six three eight", "eight six three", "six six eight"] * 3, 3,
                          tmp_path_factory.mktemp("lm") / "digits")  # fmt: skip


def frames(*spec: dict[str, float]) -> np.ndarray:
    """Log-probabilities of a clip: per frame, the probability of each token named (the rest near zero)."""
    rows = []
    for probs in spec:
        p = np.full(len(VOCAB), 1e-4)
        for token, value in probs.items():
            p[VOCAB[token]] = value
        rows.append(np.log(p / p.sum()))
    return np.array(rows, dtype=np.float32)


# "three eight", where the acoustic model is unsure of the second e of "three" and of the i of "eight"
UNSURE = frames({"t": 1}, {"[PAD]": 1}, {"h": 1}, {"r": 1}, {"e": 1}, {"[PAD]": 1}, {"e": 0.4, "[PAD]": 0.6},
                {"|": 1}, {"e": 1}, {"i": 0.3, "[PAD]": 0.7}, {"g": 1}, {"h": 1}, {"t": 1})  # fmt: skip


def test_lmplz_writes_a_model_folder_whole(digits_lm: Path) -> None:
    folder = digits_lm.parent
    assert sorted(p.name for p in folder.iterdir()) == ["lm.arpa", "lm.bin", "unigrams.txt"]
    assert "\\3-grams:" in (folder / "lm.arpa").read_text()
    assert (folder / "unigrams.txt").read_text().split() == ["eight", "six", "three"]
    assert not list(folder.parent.glob(".*partial*"))


def test_the_lm_fixes_what_greedy_decoding_gets_wrong(tokenizer: Wav2Vec2CTCTokenizer, digits_lm: Path) -> None:
    assert tokenizer.decode(UNSURE.argmax(-1)) == "thre eght"
    decoder = make_decoder(tokenizer, digits_lm.parent, alpha=0.5, beta=1.0)
    assert beam_decode(decoder, [UNSURE], beam_width=50) == ["three eight"]
    decoder.reset_params(alpha=0.0, beta=0.0)  # no LM weight: the beam search alone keeps the acoustic best
    assert beam_decode(decoder, [UNSURE], beam_width=50) == ["thre eght"]


def test_tuning_finds_weights_that_use_the_lm(tokenizer: Wav2Vec2CTCTokenizer, digits_lm: Path) -> None:
    decoder = make_decoder(tokenizer, digits_lm, alpha=0.0, beta=0.0)
    alpha, _, grid = tune_weights(decoder, lambda width: beam_decode(decoder, [UNSURE], width),
                                  lambda texts: float(texts != ["three eight"]), beam_width=20, alphas=(0.0, 0.5),
                                  betas=(0.0, 1.0))  # fmt: skip
    assert alpha == 0.5 and len(grid) == 4
    assert beam_decode(decoder, [UNSURE], beam_width=20) == ["three eight"]  # left with the weights found


def test_alphabet_maps_blank_and_word_delimiter(tokenizer: Wav2Vec2CTCTokenizer) -> None:
    assert ctc_alphabet(tokenizer)[:4] == ["", "[UNK]", " ", "e"]


def test_missing_pieces_are_refused_in_one_line_naming_the_installer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path))
    monkeypatch.setattr(ngram_lm.sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match=r"KenLM's lmplz is not installed: install the n-gram LM extra: bash "
                       r"scripts/install_lm.sh"):  # fmt: skip
        build_ngram_lm(["a b"], 3, tmp_path / "lm")
    monkeypatch.setitem(sys.modules, "pyctcdecode", None)
    with pytest.raises(UsageError, match=r"needs pyctcdecode: install the n-gram LM extra"):
        require_decoder()


def test_bad_orders_and_empty_text_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--lm_order 7: give 2 to 6"):
        build_ngram_lm(["a b"], 7, tmp_path / "lm")
    with pytest.raises(UsageError, match="every transcript is empty"):
        build_ngram_lm(["", "  "], 3, tmp_path / "lm")
    with pytest.raises(UsageError, match="no KenLM model there"):
        ngram_lm.find_lm(tmp_path / "nothing")


def test_ctc_run_with_lm_order_reports_both_wers_and_pipeline_decodes_with_the_lm(
    tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "20",
                          "--lm_order", "3", "--lm_beam_width", "100"))  # fmt: skip
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert {"eval_wer", "eval_wer_lm", "eval_normalized_wer_lm", "eval_lm_seconds_per_clip"} <= set(results)
    assert (results["eval_lm_alpha"], results["eval_lm_beta"]) == (0.5, 1.0)
    assert (output_dir / "language_model_source" / "lm.bin").is_file()
    assert (output_dir / "language_model").is_dir() and (output_dir / "alphabet.json").is_file()
    rows = [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()]
    assert all("hypothesis_lm" in row for row in rows)
    # Every LM hypothesis is made of training words: the unigrams bound what beam search may write
    words = set((output_dir / "language_model_source" / "unigrams.txt").read_text().split())
    assert all(set(row["hypothesis_lm"].split()) <= words for row in rows)

    asr = pipeline("automatic-speech-recognition", model=str(output_dir))
    assert asr.type == "ctc_with_lm"
    row = rows[0]
    assert asr(row["id"])["text"].strip() == row["hypothesis_lm"]


def test_asr_transcribe_and_the_onnx_export_decode_with_the_lm_the_output_dir_carries(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    from asr_finetune.cli import transcribe as transcribe_command

    output_dir = tmp_path / "run"
    ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "20",
                      "--lm_order", "2", "--lm_alpha", "2.0", "--lm_beta", "0.0"))  # fmt: skip
    rows = [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()]
    assert any(row["hypothesis"] != row["hypothesis_lm"] for row in rows[:3])  # the LM changes these transcripts
    clips = [row["id"] for row in rows[:3]]
    out = tmp_path / "transcripts"
    assert transcribe_command.run(["--no_progress", "--model", str(output_dir), "--output_dir", str(out), *clips]) == 0
    assert [(out / f"{Path(clip).stem}.txt").read_text().strip() for clip in clips] == [
        row["hypothesis_lm"] for row in rows[:3]
    ]
    # The ONNX export carries the LM: ONNX Runtime's logits, the same beam search
    from asr_finetune.cli.export import main as export_main

    export = export_main(["--model", str(output_dir), "--to", "onnx", "--output_dir", str(tmp_path / "onnx")])
    onnx_out = tmp_path / "onnx_transcripts"
    assert transcribe_command.run(["--no_progress", "--engine", "onnx", "--model", str(export), "--output_dir",
                                   str(onnx_out), *clips]) == 0  # fmt: skip
    assert [(onnx_out / f"{Path(clip).stem}.txt").read_text().strip() for clip in clips] == [
        row["hypothesis_lm"] for row in rows[:3]
    ]


def test_builder_reads_a_dataset_split_and_an_evaluation_tunes_with_it(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    from asr_finetune.cli.ngram_lm import main as build_main

    build_main(["--dataset_name", str(corpus), "--train_split_name", "train", "--order", "2", "--output_dir",
                str(tmp_path / "lm")])  # fmt: skip
    words = set((tmp_path / "lm" / "unigrams.txt").read_text().split())
    assert words <= {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"} and len(words) > 5
    trained = tmp_path / "run"
    ctc_main(ctc_args(tiny_model, corpus, trained, "--do_train", "--max_steps", "10"))
    evaluated = tmp_path / "eval"
    ctc_main(ctc_args(trained, corpus, evaluated, "--do_eval", "--lm_path", str(tmp_path / "lm"), "--lm_tune",
                      "--lm_beam_width", "20"))  # fmt: skip
    results = json.loads((evaluated / "eval_results.json").read_text())
    assert len(results["eval_lm_grid"]) == 30
    best = min(results["eval_lm_grid"], key=lambda point: point["wer"])
    assert (results["eval_lm_alpha"], results["eval_lm_beta"]) == (best["alpha"], best["beta"])
    assert results["eval_normalized_wer_lm"] == best["wer"]
    attrs = json.loads((evaluated / "language_model" / "attrs.json").read_text())
    assert (attrs["alpha"], attrs["beta"]) == (best["alpha"], best["beta"])  # pipeline() decodes with the pair found
    card = (evaluated / "README.md").read_text()
    assert "| eval_normalized_wer_lm |" in card and "eval_lm_grid" not in card  # figures, not the grid


def test_lm_flags_that_cannot_work_are_refused_at_start(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--lm_path and --lm_order both give an LM"):
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "a", "--do_train", "--lm_order", "3", "--lm_path", "x"))
    with pytest.raises(UsageError, match="--lm_order builds the LM from the training split: add --do_train"):
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "b", "--do_eval", "--lm_order", "3"))
    with pytest.raises(UsageError, match="no KenLM model there"):
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "c", "--do_eval", "--lm_path", str(tmp_path / "none")))
    with pytest.raises(UsageError, match="--lm_tune tunes an LM's weights"):
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "d", "--do_eval", "--lm_tune"))


def test_a_file_that_is_no_lm_is_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "notes.arpa"
    bad.write_text("just some words\n")
    with pytest.raises(UsageError, match=r"notes.arpa: neither an ARPA file"):
        ngram_lm.find_lm(bad)


def test_the_builder_never_replaces_a_folder_that_is_not_an_lm(tmp_path: Path) -> None:
    run = tmp_path / "my-model"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(UsageError, match="holds something other than an n-gram LM"):
        build_ngram_lm(["a b c"], 2, run)
    assert (run / "model.safetensors").read_bytes() == b"weights"


def test_two_processes_share_the_lm_decoding_and_agree_with_one(tiny_model: Path, corpus: Path,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    from test_launch import CTC

    from conftest import run_on_free_port

    out = tmp_path / "two"
    flags = ("--lm_order", "2", "--lm_tune", "--lm_beam_width", "10")
    proc = run_on_free_port(lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                          "--master_port", port, CTC, *ctc_args(tiny_model, corpus, out, "--do_train",
                                          "--do_eval", "--max_steps", "4", *flags)], timeout=600)  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("World: 2 process(es)") == 2, log[-3000:]
    two = [json.loads(line) for line in (out / "eval_predictions.jsonl").read_text().splitlines()]
    assert len(two) == 8 and all("hypothesis_lm" in row for row in two)
    assert len(json.loads((out / "eval_results.json").read_text())["eval_lm_grid"]) == 30
    # one process, the same model and LM: the same LM hypotheses, clip for clip
    one = tmp_path / "one"
    ctc_main(ctc_args(out, corpus, one, "--do_eval", "--lm_path", str(out / "language_model_source"), "--lm_tune",
                      "--lm_beam_width", "10"))  # fmt: skip
    rows = [json.loads(line) for line in (one / "eval_predictions.jsonl").read_text().splitlines()]
    assert [row["hypothesis_lm"] for row in rows] == [row["hypothesis_lm"] for row in two]
