import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import Seq2SeqTrainingArguments, TrainingArguments

from asr_finetune.training.backends import BackendError, select_backend
from asr_finetune.training.trainers import PRIVATE_TRAINER_HOOKS

from conftest import REPO

BASE = ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "o"]
HAVE_HABANA = importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.habana") is not None


def test_stock_classes_without_habana() -> None:
    assert select_backend(BASE).arguments_class is TrainingArguments
    assert select_backend(BASE, seq2seq=True).arguments_class is Seq2SeqTrainingArguments
    assert select_backend(BASE + ["--use_habana", "false"]).name == "torch"


def test_fp16_on_gaudi_is_refused_with_the_reason() -> None:
    with pytest.raises(BackendError, match="Gaudi trains in bf16. Use --bf16"):
        select_backend(BASE + ["--use_habana", "--fp16"])


def test_gaudi_flags_need_use_habana() -> None:
    with pytest.raises(BackendError, match="--use_lazy_mode, --gaudi_config_name: Gaudi flag"):
        select_backend(BASE + ["--use_lazy_mode", "--gaudi_config_name", "Habana/wav2vec2"])


def test_json_config_is_read_for_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"use_habana": True, "fp16": True}))
    with pytest.raises(BackendError, match="--fp16"):
        select_backend([str(path)])


@pytest.mark.skipif(HAVE_HABANA, reason="optimum-habana is installed here")
def test_use_habana_without_optimum_habana_stops_at_start_saying_what_to_install() -> None:
    with pytest.raises(BackendError, match=r"pip install 'asr-finetune\[hpu\]'"):
        select_backend(BASE + ["--use_habana", "--use_lazy_mode", "--gaudi_config_name", "Habana/wav2vec2"])
    script = REPO / "scripts" / "run_speech_recognition_ctc.py"
    proc = subprocess.run(
        [sys.executable, str(script), *BASE, "--use_habana", "--bf16"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "optimum-habana" in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", PRIVATE_TRAINER_HOOKS)
def test_trainer_internals_we_override_still_exist(name: str) -> None:
    """A rename upstream would silently turn our override into dead code: fail here instead."""
    import inspect

    from transformers import Seq2SeqTrainer, Trainer

    for cls in (Trainer, Seq2SeqTrainer):
        assert callable(getattr(cls, name, None)), f"{cls.__name__}.{name} is gone"
    if name == "_save":
        assert list(inspect.signature(Trainer._save).parameters)[:3] == ["self", "output_dir", "state_dict"]
