import dataclasses
import json
from pathlib import Path

import pytest
from transformers import TrainingArguments

from asr_finetune.args import RECIPE_KEY, parse_args
from asr_finetune.backends import GAUDI_FLAGS
from asr_finetune.recipes import args_to_argv, list_recipes, main, recipe_command, script_arguments

from conftest import REPO

RECIPES = list_recipes(REPO / "configs")


def test_every_published_table_row_has_a_recipe() -> None:
    names = {recipe.name for recipe in RECIPES}
    for expected in (
        "timit_wav2vec2_base",
        "librispeech_clean100_wavlm_large",
        "common_voice_tr_xlsr53_8gpu",
        "common_voice_phonemes_sv_se_xls_r_300m",
        "mls_german_xls_r_300m",
        "librispeech_clean100_wav2vec2_large_lv60_hpu8",
        "minds14_wav2vec2_base_task_guide",
    ):
        assert expected in names
    assert len(names) >= 20


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_resolves_and_its_arguments_parse(recipe) -> None:
    assert (REPO / recipe.script).is_file()
    argv = args_to_argv(recipe.args)
    gaudi = [key for key in recipe.args if key in GAUDI_FLAGS]
    if gaudi:  # parsed here by the stock classes: Gaudi flags (and bf16, refused on CPU) set aside
        assert recipe.args.get("use_habana") is True and recipe.args.get("bf16") and "fp16" not in recipe.args
        argv = args_to_argv({k: v for k, v in recipe.args.items() if k not in (*GAUDI_FLAGS, "bf16")})
    groups = script_arguments(recipe.task)
    parsed = parse_args(groups, argv)
    assert any(getattr(group, "output_dir", None) == recipe.args["output_dir"] for group in parsed)
    if recipe.task != "pretraining":
        assert isinstance(parsed[-1], TrainingArguments)
    for group in parsed:
        if isinstance(group, TrainingArguments):
            continue
        for f in dataclasses.fields(group):
            if f.name in recipe.args and not isinstance(recipe.args[f.name], list):
                assert getattr(group, f.name) == recipe.args[f.name], f.name


def test_a_config_file_is_itself_a_flag_file() -> None:
    config = REPO / "configs" / "ctc" / "timit_wav2vec2_base.json"
    assert RECIPE_KEY in json.loads(config.read_text())
    model, data, _, training = parse_args(script_arguments("ctc"), [str(config)])
    assert model.model_name_or_path == "facebook/wav2vec2-base" and training.num_train_epochs == 20


def test_launch_as_published_or_overridden() -> None:
    by_name = {recipe.name: recipe for recipe in RECIPES}
    command, _ = recipe_command(by_name["librispeech_clean100_wav2vec2_large_lv60"])
    assert command[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "8"]
    command, _ = recipe_command(
        by_name["librispeech_clean100_wav2vec2_large_lv60"], nproc=1, extra=["--max_steps", "3"]
    )
    assert command[1] == "scripts/run_speech_recognition_ctc.py" and command[-2:] == ["--max_steps", "3"]
    command, env = recipe_command(by_name["librispeech_clean100_wav2vec2_large_lv60_hpu8"])
    assert Path(command[0]).name == "mpirun" and command[2] == "8" and env["MASTER_PORT"] == "29500"


def test_dry_run_prints_and_runs_nothing(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # as run_examples.sh runs it
    assert main(["demo_synthetic_digits_ctc", "--dry-run", "--nproc", "2", "--", "--max_steps", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("python scripts/make_synthetic_corpus.py")
    assert "--nproc_per_node 2" in lines[-1] and lines[-1].endswith("--max_steps 5")
    assert main(["list"]) == 0
    assert "timit_wav2vec2_base" in capsys.readouterr().out


def test_the_config_folder_names_the_script() -> None:
    scripts = {recipe.task: recipe.script for recipe in RECIPES}
    assert scripts == {
        "ctc": "scripts/run_speech_recognition_ctc.py",
        "seq2seq": "scripts/run_speech_recognition_seq2seq.py",
        "pretraining": "scripts/run_wav2vec2_pretraining_no_trainer.py",
    }
    for recipe in RECIPES:
        assert "script" not in json.loads(recipe.path.read_text())[RECIPE_KEY], recipe.path


def test_a_folder_that_names_no_script_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "x.json").write_text(json.dumps({RECIPE_KEY: {}, "output_dir": "x"}))
    with pytest.raises(ValueError, match="runs no entry script"):
        list_recipes(tmp_path)
