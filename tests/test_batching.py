import random

import pytest
import torch

from asr_finetune.data.collators import CTCCollator, audio_stats, pad_labels, static_collator
from asr_finetune.data.sampling import BatchingArguments, DurationBatchSampler
from asr_finetune.errors import UsageError
from asr_finetune.tools.tiny_models import wav2vec2_feature_extractor
from asr_finetune.training.throughput import ThroughputMeter


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


@pytest.mark.parametrize("budget", [{"max_batch_duration": 60.0}, {"batch_size": 16}])
def test_static_shapes_are_few_and_cover_every_utterance(budget: dict) -> None:
    durations = long_tailed()
    sampler = DurationBatchSampler(durations, static=True, num_replicas=2, rank=0, **budget)
    lengths = sampler.static_lengths(16000)
    assert len(lengths) == 8 and list(lengths) == sorted(lengths) and all(n % 320 == 0 for n in lengths)
    collator = CTCCollator(wav2vec2_feature_extractor(), static_lengths=lengths)
    shapes, seen = set(), set()
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        for rank in (0, 1):
            sampler.rank = rank
            for batch in sampler:
                seen.update(batch)
                length = next(n for n in lengths if n >= max(durations[i] for i in batch) * 16000)
                shapes.add((len(batch), length))
    assert seen == set(range(len(durations)))
    # each bucket: one size for its full batches, at most one more for its last; lengths never change
    assert len({length for _, length in shapes}) == 8 and len(shapes) <= 2 * 8 + 2
    if "max_batch_duration" in budget:
        assert all(size * length / 16000 <= 60.0 + size * 0.02 for size, length in shapes)
    items = [{"input_values": [0.1] * 8000, "labels": [1, 2], "seconds": 0.5},
             {"input_values": [0.1] * 5000, "labels": [3], "seconds": 0.3125}]
    batch = collator(items)
    expected = next(n for n in lengths if n >= 8000)
    assert batch["input_values"].shape == (2, expected)
    assert batch["attention_mask"].sum(1).tolist() == [8000, 5000]  # the padding is masked
    assert batch["labels"].shape == (2, 16)  # labels padded to a multiple of 16
    assert float(batch["padded_seconds"]) == pytest.approx(2 * expected / 16000)  # counted as padding


def test_static_batches_change_between_epochs_but_not_their_lengths() -> None:
    durations = long_tailed(400)
    sampler = DurationBatchSampler(durations, batch_size=8, static=True)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert {tuple(sorted(b)) for b in first} != {tuple(sorted(b)) for b in second}
    bucket_of = {i: b for b, bucket in enumerate(sampler.static_buckets) for i in bucket}
    assert all(len({bucket_of[i] for i in batch}) == 1 for batch in first + second if len(batch) == 8)


def test_static_shapes_need_buckets_and_a_whole_split() -> None:
    with pytest.raises(UsageError, match="--static_shapes .* --max_batch_duration SECONDS or --duration_buckets"):
        BatchingArguments(static_shapes=True)
    with pytest.raises(UsageError, match="--static_shapes .* --streaming"):
        BatchingArguments(static_shapes=True, duration_buckets=True).check(streaming=True)
    BatchingArguments(static_shapes=True, max_batch_duration=20.0).check(streaming=False)


def test_static_collator_leaves_fixed_window_models_and_dynamic_samplers_alone() -> None:
    collator = CTCCollator(wav2vec2_feature_extractor())
    assert static_collator(collator, DurationBatchSampler([1.0, 2.0], batch_size=1)) is collator
    static = static_collator(collator, DurationBatchSampler([1.0, 2.0], batch_size=1, static=True))
    assert static.static_lengths and collator.static_lengths == ()


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
    from asr_finetune.training import throughput

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

    from asr_finetune.tools.tiny_models import tiny_wav2vec2_config
    from asr_finetune.training.eval_steps import blank_padded_frames

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
