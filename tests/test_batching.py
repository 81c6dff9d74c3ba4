import random

import pytest
import torch

from asr_finetune.batching import CTCCollator, DurationBatchSampler, audio_stats, pad_labels
from asr_finetune.throughput import ThroughputMeter
from asr_finetune.tiny_models import wav2vec2_feature_extractor


def long_tailed(n: int = 2000, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [min(30.0, 0.5 + rng.lognormvariate(1.0, 0.7)) for _ in range(n)]


def padding(durations: list[float], batches: list[list[int]]) -> float:
    real = sum(durations[i] for batch in batches for i in batch)
    padded = sum(len(batch) * max(durations[i] for i in batch) for batch in batches)
    return 1 - real / padded


def test_every_utterance_once_per_epoch_in_budget() -> None:
    durations = long_tailed()
    sampler = DurationBatchSampler(durations, max_batch_duration=60.0)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(len(durations)))
    assert all(len(batch) * max(durations[i] for i in batch) <= 60.0 for batch in batches)
    assert len(batches) == len(sampler)


def test_buckets_cut_padding_against_random_batches() -> None:
    durations = long_tailed()
    bucketed = list(DurationBatchSampler(durations, batch_size=16))
    order = list(range(len(durations)))
    random.Random(0).shuffle(order)
    shuffled = [order[i : i + 16] for i in range(0, len(order), 16)]
    assert padding(durations, bucketed) <= 0.05 < 0.2 < padding(durations, shuffled)
    assert padding(durations, list(DurationBatchSampler(durations, max_batch_duration=120.0))) <= 0.05


def test_deterministic_by_seed_and_epoch() -> None:
    durations = long_tailed(300)
    first = list(DurationBatchSampler(durations, batch_size=8, seed=3))
    assert first == list(DurationBatchSampler(durations, batch_size=8, seed=3))
    assert first != list(DurationBatchSampler(durations, batch_size=8, seed=4))
    sampler = DurationBatchSampler(durations, batch_size=8, seed=3)
    sampler.set_epoch(1)
    second = list(sampler)
    # Not just a new order: the batches themselves change between epochs.
    kept = {tuple(sorted(b)) for b in first} & {tuple(sorted(b)) for b in second}
    assert len(kept) < len(first) // 4


def test_ranks_share_the_work_in_step() -> None:
    durations = long_tailed(1001)
    ranks = [list(DurationBatchSampler(durations, max_batch_duration=40.0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    seen = {i for batches in ranks for batch in batches for i in batch}
    assert seen == set(range(len(durations)))
    # At each step both ranks hold batches of similar length: neither waits long on the other.
    longest = [[max(durations[i] for i in batch) for batch in batches] for batches in ranks]
    ratios = sorted(max(a, b) / min(a, b) for a, b in zip(*longest, strict=True))
    assert ratios[len(ratios) // 2] < 1.1


def test_an_utterance_over_the_budget_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="--max_batch_duration 10"):
        DurationBatchSampler([3.0, 12.0], max_batch_duration=10)


def test_ctc_collator_pads_and_reports_stats() -> None:
    items = [
        {"input_values": [0.1] * 16000, "labels": [1, 2], "seconds": 1.0},
        {"input_values": [0.1] * 8000, "labels": [3], "seconds": 0.5},
    ]
    batch = CTCCollator(wav2vec2_feature_extractor())(items)
    assert batch["input_values"].shape == (2, 16000)
    assert batch["attention_mask"][1].sum() == 8000
    assert batch["labels"].tolist() == [[1, 2], [3, -100]]
    assert float(batch["audio_seconds"]) == 1.5 and float(batch["padded_seconds"]) == 2.0


def test_fixed_length_inputs_count_their_padding() -> None:
    stats = audio_stats([{"seconds": 3.0}, {"seconds": 6.0}], fixed_seconds=30.0)
    assert float(stats["padded_seconds"]) == 60.0


def test_pad_labels_to_a_multiple() -> None:
    assert pad_labels([[1, 2, 3]], pad_to_multiple_of=4).tolist() == [[1, 2, 3, -100]]
    assert pad_labels([[5], [6, 7]]).dtype == torch.long


def test_throughput_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    from asr_finetune import throughput

    now = [100.0]
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: now[0])  # a clock the test moves
    meter = ThroughputMeter()
    meter.add_wait(5.0)  # the first batch's wait (loader start-up) starts the clock and is not counted
    meter.add_batch(8.0, 10.0)
    now[0] += 4.0
    meter.add_wait(1.0)  # 1 s of these 4 s waited for the loader
    meter.add_batch(10.0, 10.0)
    window = meter.window()
    assert window == {"audio_seconds_per_second": 4.5, "padding_fraction": 0.1, "loader_wait_share": 0.25}
    now[0] += 2.0
    assert meter.window() == {"audio_seconds_per_second": 0.0, "padding_fraction": 0.0, "loader_wait_share": 0.0}
    assert meter.totals() == {
        "audio_seconds_per_second": 3.0, "padding_fraction": 0.1, "loader_wait_share": round(1 / 6, 4),
        "bad_rows_skipped": 0,
    }  # fmt: skip


def test_padded_frames_decode_as_blank() -> None:
    from transformers import Wav2Vec2ForCTC

    from asr_finetune.ctc import blank_padded_frames
    from asr_finetune.tiny_models import tiny_wav2vec2_config

    config = tiny_wav2vec2_config(hidden_size=32, layers=1, conv_channels=8)
    config.vocab_size, config.pad_token_id = 6, 5
    model = Wav2Vec2ForCTC(config)
    attention_mask = torch.ones(2, 16000, dtype=torch.long)
    attention_mask[1, 8000:] = 0
    frames = model._get_feat_extract_output_lengths(torch.tensor([16000, 8000])).tolist()
    logits = torch.zeros(2, frames[0], 6)
    logits[..., 2] = 1.0  # every frame says "letter 2", padding included
    ids = blank_padded_frames(logits, attention_mask, model).argmax(-1)
    assert (ids[0] == 2).all()
    assert (ids[1, : frames[1]] == 2).all() and (ids[1, frames[1] :] == 5).all()
