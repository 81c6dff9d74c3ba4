import dataclasses
import json
from pathlib import Path

import pytest
from transformers import TrainingArguments

from asr_finetune.args import RECIPE_KEY, config_to_argv, parse_args
from asr_finetune.tools.recipes import list_recipes, main, recipe_command, script_arguments, seed_problems
from asr_finetune.tools.seeds import SEED_DIR, parse_shell_command, read_seed
from asr_finetune.training.backends import GAUDI_FLAGS

from conftest import REPO

RECIPES = list_recipes(REPO / "configs")


def test_every_published_table_row_has_a_recipe() -> None:
    names = {recipe.name for recipe in RECIPES}
    for expected in (
        "timit_wav2vec2_base",
        "librispeech_clean100_wavlm_large",
        "common_voice_tr_xlsr53",
        "common_voice_tr_xlsr53_8gpu",
        "common_voice_tr_xlsr53_ft_8gpu",
        "common_voice_tr_xls_r_300m_8gpu",
        "common_voice_tr_xls_r_1b_2gpu",
        "common_voice_phonemes_sv_se_xls_r_300m",
        "mls_german_xls_r_300m",
        "librispeech_clean100_wav2vec2_base_bart_base",
        "librispeech_clean100_wav2vec2_large_lv60_bart_large",
        "librispeech_clean100_wav2vec2_large_lv60_hpu",
        "librispeech_clean100_wav2vec2_large_lv60_hpu8",
        "librispeech_wav2vec2_base_pretraining_demo",
        "minds14_wav2vec2_base_task_guide",
    ):
        assert expected in names
    assert len(names) >= 31


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_resolves_and_its_arguments_parse(recipe) -> None:
    assert (REPO / recipe.script).is_file()
    argv = config_to_argv(recipe.args)
    gaudi = [key for key in recipe.args if key in GAUDI_FLAGS]
    if gaudi:  # parsed here by the stock classes: Gaudi flags (and bf16, refused on CPU) set aside
        assert recipe.args.get("use_habana") is True and "fp16" not in recipe.args  # Gaudi trains in bf16
        argv = config_to_argv({k: v for k, v in recipe.args.items() if k not in (*GAUDI_FLAGS, "bf16")})
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
    model, data, *_, training = parse_args(script_arguments("ctc"), [str(config)])
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
    with pytest.raises(ValueError, match="no task 'metrics'"):
        list_recipes(tmp_path)


# ---------------------------------------------------------------------------------------- recipes against their seeds
# Each recipe's _recipe.seed names the published command it reproduces, kept verbatim in configs/seed_commands/; the
# recipe must pass exactly the seed's flags (same launcher, same process count) except for the substitutions it lists,
# each with its reason. Recipes of ours say "seed": null; table rows whose command is a run.sh on the Hub, which cannot
# be read here, say "command": null and name that run.sh (their flags are not checked: see the README's Recipes).
SEEDED = [recipe for recipe in RECIPES if recipe.seed and recipe.seed.get("command")]


def test_every_recipe_says_what_it_was_copied_from() -> None:
    for recipe in RECIPES:
        meta = json.loads(recipe.path.read_text())[RECIPE_KEY]
        assert "seed" in meta, f"{recipe.name}: no `seed` key (null for a recipe of ours)"
        if meta["seed"] is None:  # ours: no outside source to be faithful to
            assert recipe.name.startswith("demo_"), recipe.name
        elif meta["seed"]["command"] is None:
            assert meta["seed"]["own_command"].startswith("https://huggingface.co/"), recipe.name
            assert "not checked" in recipe.note, recipe.name
        else:
            assert (REPO / SEED_DIR / meta["seed"]["command"]).is_file(), recipe.name
    assert len(SEEDED) == 17


@pytest.mark.parametrize("recipe", SEEDED, ids=[r.name for r in SEEDED])
def test_recipe_is_its_seed_command_but_for_the_listed_substitutions(recipe) -> None:
    problems = seed_problems(recipe, REPO / SEED_DIR)
    assert not problems, "\n".join(problems)


def test_a_stray_flag_or_a_changed_value_is_caught() -> None:
    by_name = {recipe.name: recipe for recipe in RECIPES}
    recipe = dataclasses.replace(by_name["librispeech_clean100_wav2vec2_large_lv60_hpu8"])
    recipe.args = {**recipe.args, "dataloader_num_workers": 8, "learning_rate": 1e-4}
    recipe.env = {"PT_HPU_LAZY_MODE": "1"}
    problems = seed_problems(recipe, REPO / SEED_DIR)
    assert [p.split(" is ")[0] for p in problems] == [
        "optimum_habana_ctc_multi_hpu.sh: --learning_rate",
        "optimum_habana_ctc_multi_hpu.sh: --dataloader_num_workers",
        "optimum_habana_ctc_multi_hpu.sh: --env PT_HPU_LAZY_MODE",
    ]
    recipe = dataclasses.replace(by_name["common_voice_tr_xlsr53"], nproc=2, launcher="torchrun")
    assert len(seed_problems(recipe, REPO / SEED_DIR)) == 2  # launcher and process count
    recipe = dataclasses.replace(by_name["librispeech_clean100_wav2vec2_large_lv60_bart_large"])
    recipe.args = {**recipe.args, "warmup_steps": 400}  # the README's value, not the model card's
    assert seed_problems(recipe, REPO / SEED_DIR) == [
        "transformers_seq2seq_multi_gpu.sh: substitution 'warmup_steps' is listed, but the flag equals the seed's",
        "model_card_wav2vec2-2-bart-large.txt: warmup_steps is 400 here, '500' on the card",
    ]
    recipe = dataclasses.replace(by_name["librispeech_clean100_wav2vec2_base_bart_base"])
    recipe.prepare = [recipe.prepare[0].replace("--num_beams 5", "--num_beams 4")]
    assert seed_problems(recipe, REPO / SEED_DIR) == [
        "transformers_seq2seq_create_model.py: --num_beams is '4' here, 5 in the seed, and not listed in substitutions"
    ]


def test_seed_commands_are_read_as_a_shell_reads_them() -> None:
    single = read_seed("optimum_habana_ctc_single_hpu.sh", REPO / SEED_DIR)
    assert (single.launcher, single.nproc, single.script) == ("python", 1, "run_speech_recognition_ctc.py")
    assert single.flags["chars_to_ignore"] == [",", "?", ".", "!", "-", ";", ":", '"', "“", "%", "‘", "”"]
    assert single.flags["per_device_train_batch_size"] == "8" and single.flags["throughput_warmup_steps"] == "2"
    multi = read_seed("optimum_habana_ctc_multi_hpu.sh", REPO / SEED_DIR)
    assert (multi.launcher, multi.nproc) == ("gaudi_spawn_mpi", 8)
    assert multi.flags["chars_to_ignore"] == '",?.!-;:\\"“%‘”"'  # one single-quoted word, kept whole
    bf16 = read_seed("optimum_habana_ctc_single_hpu_bf16.sh", REPO / SEED_DIR)
    assert bf16.env == {"PT_HPU_LAZY_MODE": "1"} and bf16.flags["trust_remote_code"] == "True"
    demo = read_seed("transformers_pretraining_demo.sh", REPO / SEED_DIR)  # ends in a dangling backslash
    assert (demo.launcher, demo.nproc) == ("accelerate", None) and demo.flags["gradient_checkpointing"] is True
    assert demo.flags["dataset_split_names"] == ["validation", "test"]
    guide = read_seed("transformers_task_guide_asr.py", REPO / SEED_DIR)
    assert guide.flags["metric_for_best_model"] == "wer" and guide.flags["load_best_model_at_end"] is True
    assert guide.flags["dataset_config_name"] == "en-US" and "pad_token_id" not in guide.flags
    torchrun = parse_shell_command("torchrun --nproc_per_node 2 run_speech_recognition_ctc.py --fp16 --x=1")
    assert (torchrun.launcher, torchrun.nproc, torchrun.flags) == ("torchrun", 2, {"fp16": True, "x": "1"})


def test_task_guide_recipe_keeps_the_best_checkpoint_by_wer() -> None:
    recipe = {recipe.name: recipe for recipe in RECIPES}["minds14_wav2vec2_base_task_guide"]
    *_, training = parse_args(script_arguments("ctc"), config_to_argv(recipe.args))
    assert training.load_best_model_at_end and training.metric_for_best_model == "wer"  # the Trainer reads eval_wer
    assert training.greater_is_better is False
    assert (recipe.args["train_split_name"], recipe.args["eval_split_name"]) == ("train[:80]", "train[80:100]")


def test_accelerate_launch_as_published(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["librispeech_wav2vec2_base_pretraining_demo", "--dry-run"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    launch = " -m accelerate.commands.launch --multi_gpu --num_processes 2 scripts/run_wav2vec2_pretraining_no_trainer"
    assert launch in line  # --multi_gpu: two processes on CPU too (plain `--num_processes 2` starts one there)
    assert "--dataset_config_names clean clean --dataset_split_names validation test" in line
    assert main(["librispeech_wav2vec2_base_pretraining_demo", "--dry-run", "--nproc", "1"]) == 0
    assert "launch --num_processes 1 scripts/" in capsys.readouterr().out


def test_dry_run_shows_the_seed_and_each_substitution(capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["librispeech_clean100_wav2vec2_large_lv60_hpu_bf16", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("PT_HPU_LAZY_MODE=1 ")
    assert "# seed optimum_habana_ctc_single_hpu_bf16.sh +2 substitution(s)" in err
    assert "#   --attn_implementation: left out" in err
    assert main(["librispeech_clean100_wav2vec2_base_bart_base", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("python scripts/create_speech_encoder_decoder.py --encoder facebook/wav2vec2-base ")
    assert "-m torch.distributed.run --nproc_per_node 8" in lines[1]
