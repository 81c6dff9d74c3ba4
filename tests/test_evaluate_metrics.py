"""--eval_metrics with an `evaluate` module written here (a local folder, and a name found in evaluate's cache)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.errors import UsageError
from asr_finetune.evaluation import evaluate_modules as evaluate_metrics
from asr_finetune.evaluation.metrics import error_rates

# Two figures an ASR user might add: hypothesis length against the reference (characters), and the reference
# characters seen (so the test can tell that references, not hypotheses, arrived as references).
MODULE = """
import datasets
import evaluate


class {cls}(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="hypothesis characters per reference character",
            citation="",
            inputs_description="predictions and references: lists of strings",
            features=datasets.Features({{"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}}),
        )

    def _compute(self, predictions, references):
        ref_chars = sum(len(r) for r in references)
        return {{"{name}": sum(len(p) for p in predictions) / ref_chars, "reference_chars": ref_chars,
                 "note": "not a number"}}
"""


def write_module(folder: Path, name: str) -> Path:
    """``folder/name/name.py``: the layout evaluate loads a local module from."""
    (folder / name).mkdir(parents=True)
    cls = "".join(part.title() for part in name.split("_"))
    (folder / name / f"{name}.py").write_text(MODULE.format(cls=cls, name=name))
    return folder / name


def test_a_local_module_is_scored_under_its_name(tmp_path: Path) -> None:
    path = write_module(tmp_path, "length_ratio")
    scores = error_rates(["one two", "three"], ["one", "three four"], ["wer", str(path)])
    assert scores == {
        "wer": pytest.approx(2 / 3),
        "length_ratio": pytest.approx((3 + 10) / (7 + 5)),
        "length_ratio_reference_chars": 12.0,
    }


def test_a_cached_module_name_loads_offline(tmp_path: Path) -> None:
    """A name evaluate has cached (where `evaluate.load("char_ratio")` leaves a Hub module) loads with no network.
    In a fresh process: evaluate's cache location is read at import."""
    cache = tmp_path / "modules"
    digest = hashlib.sha256(b"char_ratio").hexdigest()
    module_dir = cache / "evaluate_modules" / "metrics" / "evaluate-metric--char_ratio" / digest
    source = write_module(tmp_path / "src", "char_ratio") / "char_ratio.py"
    module_dir.mkdir(parents=True)
    (module_dir / "char_ratio.py").write_text(source.read_text())
    for folder in (module_dir, module_dir.parent, module_dir.parent.parent):
        (folder / "__init__.py").write_text("")
    code = ("from asr_finetune.evaluation.metrics import error_rates; "
            "print(error_rates(['ab'], ['abcd'], ['char_ratio']))")
    env = {**os.environ, "HF_MODULES_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'char_ratio': 2.0" in done.stdout


def test_a_module_that_does_not_load_stops_the_run_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--eval_metrics .*no_such_metric.*built in: wer, cer") as caught:
        evaluate_metrics.load_module(str(tmp_path / "no_such_metric"))
    assert "\n" not in str(caught.value)


def test_ctc_script_reports_the_module_beside_wer(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    module = write_module(tmp_path / "metrics", "length_ratio")
    output_dir = tmp_path / "run"
    results = ctc_main([
        "--model_name_or_path", str(tiny_model), "--dataset_name", str(corpus), "--output_dir", str(output_dir),
        "--train_split_name", "train", "--eval_split_name", "test", "--per_device_train_batch_size", "4",
        "--report_to", "none", "--disable_tqdm", "true", "--do_train", "--do_eval", "--max_steps", "2",
        "--save_strategy", "no", "--eval_metrics", "wer", str(module),
    ])  # fmt: skip
    rows = [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()]
    ref_chars = sum(len(row["reference"]) for row in rows)
    expected = sum(len(row["hypothesis"]) for row in rows) / ref_chars
    saved = json.loads((output_dir / "eval_results.json").read_text())
    for figures in (results, saved):
        assert figures["eval_length_ratio"] == pytest.approx(expected)
        assert figures["eval_length_ratio_reference_chars"] == ref_chars
        assert "eval_wer" in figures and "eval_normalized_length_ratio" in figures
