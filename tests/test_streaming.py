"""--streaming: the train split read from parquet / WebDataset shards written here, on one or several processes and
"nodes", resumed mid-stream after a kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.cli.seq2seq import main as seq2seq_main
from asr_finetune.data.shards import local_rows, write_shards
from asr_finetune.errors import DataError, UsageError
from asr_finetune.tools.tiny_models import save_tiny_whisper

from conftest import REPO, run_on_free_port

CTC = REPO / "scripts" / "run_speech_recognition_ctc_streaming.py"
SEQ2SEQ = REPO / "scripts" / "run_speech_recognition_seq2seq_streaming.py"


@pytest.fixture(scope="module")
def shards(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test corpus as 4 train shards and 1 test shard, in both formats: ROOT/parquet and ROOT/tar."""
    root = tmp_path_factory.mktemp("shards")
    for fmt in ("parquet", "tar"):
        for split, count in (("train", 4), ("test", 1)):
            write_shards(local_rows(corpus, split), root / fmt, split, count, fmt)
    return root


def stream_args(model: Path, data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model), "--dataset_name", str(data), "--output_dir", str(output_dir),
        "--train_split_name", "train", "--eval_split_name", "test", "--do_train", "--max_steps", "6",
        "--per_device_train_batch_size", "2", "--shuffle_buffer_size", "6", "--vocab_from_first_n", "32",
        "--learning_rate", "5e-3", "--logging_steps", "1", "--mask_time_prob", "0", "--report_to", "none",
        "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def losses(output_dir: Path) -> dict[int, float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def test_parquet_and_webdataset_shards_give_the_same_batches(shards: Path, tiny_model: Path, tmp_path: Path) -> None:
    results = {}
    for fmt in ("parquet", "tar"):
        results[fmt] = ctc_main(stream_args(tiny_model, shards / fmt, tmp_path / fmt, "--do_eval"), streaming=True)
    # The same rows in the same shards, read alike: every step sees the same batch.
    assert losses(tmp_path / "tar") == pytest.approx(losses(tmp_path / "parquet"), rel=1e-6)
    assert results["parquet"]["train_stream_rows_read"] == 12  # 6 steps x 2 clips: 2 blocks of 6 rows
    report = json.loads((tmp_path / "parquet" / "data_report.json").read_text())
    assert report["train"]["streamed"] and report["train"]["rows_read"] == 12 and report["eval"]["utterances"] == 8
    assert "eval_wer" in results["parquet"]


def test_what_a_stream_cannot_do_is_refused_at_start(shards: Path, corpus: Path, tiny_model: Path,
                                                     tmp_path: Path) -> None:
    def refused(error: type, match: str, *changes: str, data: Path = shards / "parquet", streaming: bool = True):
        args = stream_args(tiny_model, data, tmp_path / "x", *changes)
        with pytest.raises(error, match=match):
            ctc_main(args, streaming=streaming)

    refused(UsageError, "--num_train_epochs: a stream has no epochs", "--num_train_epochs", "2")
    refused(UsageError, "--save_strategy epoch: a stream has no epochs", "--save_strategy", "epoch")
    refused(UsageError, "needs --max_steps", "--max_steps", "-1")
    refused(UsageError, "reads whole splits", "--train_split_name", "train[:10]")
    refused(UsageError, "--shuffle_buffer_size goes with --streaming", streaming=False)
    refused(DataError, "reads local shards", data=corpus)  # an audiofolder, not shards
    args = stream_args(tiny_model, shards / "parquet", tmp_path / "y")
    args = args[: args.index("--vocab_from_first_n")] + args[args.index("--vocab_from_first_n") + 2 :]
    with pytest.raises(UsageError, match="--streaming needs a tokenizer"):
        ctc_main(args, streaming=True)


def test_processes_read_disjoint_rows_that_cover_the_corpus(shards: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One epoch of each process's stream, as split_dataset_by_node deals it: no row twice, none left out."""
    from asr_finetune.data.arguments import DataArguments
    from asr_finetune.data.stream_loader import SpeechStream, StreamPlan
    from asr_finetune.data.streaming import StreamingArguments, load_stream
    from asr_finetune.tools.tiny_models import wav2vec2_feature_extractor

    data_args = DataArguments(dataset_name=str(shards / "parquet"), train_split_name="train")
    split = load_stream(data_args, StreamingArguments(streaming=True, shuffle_buffer_size=5),
                        data_args.split_config(text_column="text", id_column="id"), None, None)
    every = sorted(row["id"] for row in local_rows_ids(shards))

    def epoch_ids(world: int, rank: int) -> list[str]:
        plan = StreamPlan(batch_size=2, seed=0, rank=rank, world_size=world, workers=0)
        ids = []
        for element in SpeechStream(split, plan, wav2vec2_feature_extractor(), "audio", "error"):
            items, meta = element
            if meta["epoch"] > 0:
                break
            ids += [item["id"] for item in items]
        return ids

    for world in (1, 2, 3):  # 4 shards: dealt by shard for 1 and 2 processes, by row for 3 (with a warning)
        per_rank = [epoch_ids(world, rank) for rank in range(world)]
        flat = [clip for ids in per_rank for clip in ids]
        assert sorted(flat) == every, world
        assert all(per_rank)
    assert "do not divide among 3 processes" in caplog.text


def local_rows_ids(shards: Path) -> list[dict]:
    import datasets

    files = sorted(str(path) for path in (shards / "parquet" / "train").glob("*.parquet"))
    return list(datasets.load_dataset("parquet", data_files=files, split="train").select_columns(["id"]))


def test_kill_and_rerun_continues_with_the_batches_of_the_uninterrupted_run(
    shards: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """2 loader workers, a checkpoint after an odd number of batches (the next batch is due from worker 1) in the
    middle of a block: the rerun's steps are the uninterrupted run's, to the loss."""
    extra = ("--max_steps", "10", "--save_steps", "5", "--dataloader_num_workers", "2")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}

    def command(output_dir: Path) -> list[str]:
        return [sys.executable, str(CTC), *stream_args(tiny_model, shards / "parquet", output_dir, *extra)]

    whole = tmp_path / "whole"
    subprocess.run(command(whole), env=env, check=True, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # The tiny model trains the next 5 steps and saves checkpoint-10 in about 0.1 s: watch closely, freeze, kill.
    while not (killed / "checkpoint-5" / "trainer_state.json").is_file() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoint-10").exists(), "the run finished before the kill"
    state = json.loads((killed / "checkpoint-5" / "trainer_state.json").read_text())
    saved = state["stateful_callbacks"]["StreamStateCallback"]["attributes"]["processes"][0]
    uninterrupted = json.loads((whole / "checkpoint-5" / "trainer_state.json").read_text())
    # the killed run saved the very position the uninterrupted run saved at the same step
    assert saved == uninterrupted["stateful_callbacks"]["StreamStateCallback"]["attributes"]["processes"][0]
    assert saved["next_worker"] == 1 and "block" in saved["positions"]["0"]
    done = subprocess.run(command(killed), env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert f"Resuming from {killed / 'checkpoint-5'}" in log
    resumed = losses(killed)
    assert sorted(resumed) == list(range(1, 11))
    assert resumed == pytest.approx(losses(whole), rel=1e-5)


@pytest.mark.parametrize("layout", ["2 processes", "2 nodes"])
def test_several_processes_and_nodes_train_one_model(
    layout: str, shards: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """The seed's `python -m torch.distributed.launch --nproc_per_node N` form, and 2 "nodes" of 1 process joined by
    torchrun's c10d rendezvous on this machine."""
    out = tmp_path / layout.replace(" ", "-")
    script = [str(CTC), *stream_args(tiny_model, shards / "parquet", out, "--max_steps", "4")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    if layout == "2 processes":
        proc = run_on_free_port(lambda port: [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node",
                                              "2", "--master_port", port, *script], env=env, timeout=600)
        logs = [proc.stdout + proc.stderr]
        assert proc.returncode == 0, logs[0][-3000:]
    else:
        from conftest import free_port

        endpoint = f"127.0.0.1:{free_port()}"
        nodes = [
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
                 "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", "t",
                 *script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            for rank in (0, 1)
        ]
        logs = [node.communicate(timeout=600)[0] for node in nodes]
        assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert "".join(logs).count("World: 2 process(es)") == 2
    results = json.loads((out / "train_results.json").read_text())
    assert results["train_stream_rows_read"] == 24  # per process 4 steps x 2 clips: 2 blocks of 6 rows begun


def test_whisper_streams_too(shards: Path, corpus: Path, tmp_path: Path) -> None:
    texts = [row["text"] for row in local_rows(corpus, "train")]
    whisper = save_tiny_whisper(tmp_path / "whisper", texts, d_model=32, layers=1, heads=2)
    args = [
        "--model_name_or_path", str(whisper), "--dataset_name", str(shards / "tar"), "--output_dir",
        str(tmp_path / "out"), "--train_split_name", "train", "--eval_split_name", "test", "--do_train", "--do_eval",
        "--max_steps", "3", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4",
        "--shuffle_buffer_size", "8", "--max_eval_samples", "4", "--predict_with_generate",
        "--generation_max_length", "12", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    results = seq2seq_main(args, streaming=True)
    assert results["train_stream_rows_read"] == 8 and "eval_wer" in results
    assert len((tmp_path / "out" / "eval_predictions.jsonl").read_text().splitlines()) == 4

    # --pack_utterances on a stream: each block of 8 clips is packed into one 30 s window as it is read (batches are
    # cut within a block, so each step here is one window).
    packed_args = [a if a != str(tmp_path / "out") else str(tmp_path / "packed") for a in args]
    packed = seq2seq_main([*packed_args, "--pack_utterances"], streaming=True)
    assert packed["train_stream_rows_read"] == 3 * 8
    assert packed["train_padding_fraction"] < results["train_padding_fraction"] - 0.2


def test_make_shards_writes_a_split_the_stream_reads_whole(corpus: Path, tmp_path: Path) -> None:
    from asr_finetune.data.arguments import DataArguments
    from asr_finetune.data.streaming import open_stream

    subprocess.run([sys.executable, str(REPO / "scripts" / "make_shards.py"), "--dataset_name", str(corpus),
                    "--output_dir", str(tmp_path), "--splits", "test", "--num_shards", "3", "--format", "tar"],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert len(list((tmp_path / "test").glob("*.tar"))) == 3
    opened = open_stream(DataArguments(dataset_name=str(tmp_path)), "test", None)
    rows = list(opened.stream)
    assert opened.shards == [f"test/test-0000{i}-of-00003.tar" for i in range(3)] and not opened.left_out
    expected = {row["text"] for row in local_rows(corpus, "test")}
    assert len(rows) == 8 and {row["text"] for row in rows} == expected
    assert all(row["audio"]["bytes"][:4] == b"RIFF" for row in rows)


def test_the_seed_streaming_command_as_published(corpus: Path, tmp_path: Path) -> None:
    """The README's "Multi GPU CTC with Dataset Streaming" command, flag for flag from configs/seed_commands, on 2 CPU
    processes. Substituted: local shards with a `sentence` column for Common Voice, a local tokenizer and a tiny
    model for the Hub ones, 4 steps for 5000, and --fp16 / --push_to_hub left out (no GPU, no Hub here)."""
    from transformers import Wav2Vec2CTCTokenizer

    from asr_finetune.data.vocab import build_vocab, save_vocab
    from asr_finetune.tools.seeds import read_seed
    from asr_finetune.tools.tiny_models import save_tiny_wav2vec2

    seed = read_seed("transformers_ctc_streaming_multi_gpu.sh", REPO / "configs" / "seed_commands")
    assert seed.launcher == "torchrun" and seed.script == "run_speech_recognition_ctc_streaming.py"
    data = tmp_path / "cv-tr"
    for split in ("train", "validation", "test"):
        rows = [{**row, "sentence": row["text"]} for row in local_rows(corpus, split)]
        write_shards(rows, data, split, 2 if split != "test" else 1, "parquet", text_column="sentence")
    save_vocab(build_vocab([row["text"] for row in local_rows(corpus, "train")], "|", "[UNK]", "[PAD]"),
               tmp_path / "tokenizer" / "vocab.json")
    Wav2Vec2CTCTokenizer(str(tmp_path / "tokenizer" / "vocab.json")).save_pretrained(tmp_path / "tokenizer")
    model = save_tiny_wav2vec2(tmp_path / "xls-r", hidden_size=144, layers=2, conv_channels=32)
    flags = {**seed.flags, "dataset_name": str(data), "model_name_or_path": str(model),
             "tokenizer_name_or_path": str(tmp_path / "tokenizer"), "output_dir": str(tmp_path / "out"),
             "max_steps": "4"}  # fmt: skip
    for gone in ("fp16", "push_to_hub"):
        flags.pop(gone)
    argv = []
    for name, value in flags.items():
        argv += [f"--{name}"] + ([] if value is True else value if isinstance(value, list) else [str(value)])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = run_on_free_port(lambda port: [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node", "2",
                                          "--master_port", port, str(CTC), *argv], env=env, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("World: 2 process(es)") == 2
    results = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert {"eval_wer", "eval_cer", "train_stream_rows_read"} <= set(results)
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and "StreamStateCallback" in state["stateful_callbacks"]


def test_the_reader_runs_ahead_of_training_and_hands_over_its_errors() -> None:
    """The next block is read while the current one trains (datasets pauses 5 s whenever a parquet stream ends: an
    epoch's end must not stall training); items keep their order; a reading error reaches the training loop."""
    import threading

    from asr_finetune.data.stream_loader import read_ahead

    second_read = threading.Event()

    def blocks():
        yield "block 0"
        second_read.set()
        yield "block 1"
        raise OSError("shard 3 is unreadable")

    items = read_ahead(blocks())
    assert next(items) == "block 0"
    assert second_read.wait(timeout=10), "the reader did not read ahead while block 0 was being trained on"
    assert next(items) == "block 1"
    with pytest.raises(OSError, match="shard 3"):
        next(items)
