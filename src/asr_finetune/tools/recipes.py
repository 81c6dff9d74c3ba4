"""Recipes: one config per published result, listed, printed and run by run_examples.sh.

``configs/<task>/NAME.json``: ``<task>`` names a :class:`~asr_finetune.tasks.task.Task` (``ctc``, ``seq2seq``,
``pretraining``), which says which script runs the recipe and which argument groups it parses. Paths are relative
to the repository root, where run_examples.sh runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr_finetune.args import RECIPE_KEY, config_to_argv
from asr_finetune.tasks.ctc import CTC
from asr_finetune.tasks.pretraining.arguments import PRETRAINING
from asr_finetune.tasks.seq2seq import SEQ2SEQ
from asr_finetune.tasks.task import Task
from asr_finetune.tools import seeds
from asr_finetune.training.backends import training_arguments_class
from asr_finetune.training.launch import launch_plan

CONFIG_DIR = Path("configs")
SCRIPT_DIR = Path("scripts")


@dataclass
class Recipe:
    """A config file: the script's flags plus what the recipe reproduces and how it is launched."""

    name: str
    path: Path
    task: str
    nproc: int
    launcher: str
    description: str
    published: dict[str, Any]
    args: dict[str, Any]
    prepare: list[str] = field(default_factory=list)
    note: str = ""
    requires: str = ""
    seed: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def script(self) -> str:
        return str(SCRIPT_DIR / find_task(self.task).script)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    config = json.loads(path.read_text(encoding="utf-8"))
    meta = config.pop(RECIPE_KEY, None)
    if meta is None:
        raise ValueError(f"{path} has no {RECIPE_KEY!r} section: it is a plain flag file, not a recipe.")
    find_task(path.parent.name)  # the folder must name a task
    return Recipe(
        name=path.stem,
        path=path,
        task=path.parent.name,
        nproc=int(meta.get("nproc", 1)),
        launcher=meta.get("launcher", "python"),
        description=meta.get("description", ""),
        published=meta.get("published", {}),
        args=config,
        prepare=list(meta.get("prepare", [])),
        note=meta.get("note", ""),
        requires=meta.get("requires", ""),
        seed=meta.get("seed"),
        env=dict(meta.get("env", {})),
    )


def list_recipes(config_dir: str | Path = CONFIG_DIR) -> list[Recipe]:
    recipes = []
    for path in sorted(Path(config_dir).glob("*/*.json"), key=lambda p: p.stem):
        if RECIPE_KEY in json.loads(path.read_text(encoding="utf-8")):
            recipes.append(load_recipe(path))
    return recipes


def find_recipe(name: str, config_dir: str | Path = CONFIG_DIR) -> Recipe:
    found = sorted(Path(config_dir).glob(f"*/{name.removesuffix('.json')}.json"))
    if not found:
        names = ", ".join(recipe.name for recipe in list_recipes(config_dir))
        raise SystemExit(f"No recipe {name!r}. Recipes: {names}")
    return load_recipe(found[0])


TASKS: dict[str, Task] = {task.name: task for task in (CTC, SEQ2SEQ, PRETRAINING)}


def find_task(name: str) -> Task:
    """The task a ``configs/<name>/`` folder names."""
    if name not in TASKS:
        raise ValueError(f"configs/{name}/: no task {name!r} (tasks: {', '.join(TASKS)}).")
    return TASKS[name]


def script_arguments(name: str) -> tuple[type, ...]:
    """The dataclasses a task's script parses, with the stock TrainingArguments class last where it has one."""
    task = find_task(name)
    if task.trainer is None:
        return task.arguments
    return (*task.arguments, training_arguments_class(seq2seq=task.seq2seq))


def recipe_command(recipe: Recipe, nproc: int | None = None, extra: list[str] | None = None) -> tuple[list[str], dict]:
    """The exact command (and extra environment) that runs a recipe on ``nproc`` processes."""
    nproc = nproc or recipe.nproc
    script_args = config_to_argv(recipe.args) + list(extra or [])
    if recipe.launcher == "accelerate":  # as published (`accelerate launch`), with the process count spelled out:
        # without --multi_gpu, accelerate starts one process where it finds fewer than two GPUs (the CPU included)
        launch = [sys.executable, "-m", "accelerate.commands.launch", *(["--multi_gpu"] if nproc > 1 else [])]
        launch += ["--num_processes", str(nproc)]
        return [*launch, recipe.script, *script_args], dict(recipe.env)
    if nproc == 1:
        return [sys.executable, recipe.script, *script_args], dict(recipe.env)
    plan = launch_plan(recipe.script, script_args, world_size=nproc, use_mpi=recipe.launcher == "gaudi_spawn_mpi")
    return plan.command, {**recipe.env, **plan.env}


def seed_problems(recipe: Recipe, seed_dir: str | Path = seeds.SEED_DIR) -> list[str]:
    """How a recipe departs from the published command it cites without saying so.

    Each flag, process count or launcher that differs from the seed command, from the hyperparameters of the model
    card it cites, or (``prepare``) from the published warm-start snippet, must be listed with its reason in that
    part's ``substitutions``; every listed substitution must be a real difference. Empty when the recipe is its seed
    but for the substitutions it lists.
    """
    seed = recipe.seed
    if not seed or not seed.get("command"):
        return []
    command = seeds.read_seed(seed["command"], seed_dir)
    found = seeds.seed_differences(recipe.args, recipe.launcher, recipe.nproc, recipe.env, command)
    problems = _unlisted(seed["command"], found, seed.get("substitutions", {}))
    if seed.get("model_card"):
        card = seeds.read_model_card(seed["model_card"], seed_dir)
        for flag, (theirs, ours) in seeds.model_card_differences(recipe.args, recipe.nproc, card).items():
            problems.append(f"{seed['model_card']}: {flag} is {ours!r} here, {theirs!r} on the card")
    if seed.get("prepare"):
        step = next((s for s in recipe.prepare if "create_speech_encoder_decoder.py" in s), None)
        ours = seeds.parse_shell_command(step).flags if step else {}
        theirs = seeds.read_seed(seed["prepare"]["command"], seed_dir).flags
        found = seeds.differences(theirs, ours)
        problems += _unlisted(seed["prepare"]["command"], found, seed["prepare"].get("substitutions", {}))
    return problems


def _unlisted(name: str, found: dict[str, tuple], listed: dict[str, str]) -> list[str]:
    unexplained = [
        f"{name}: --{flag} is {ours!r} here, {theirs!r} in the seed, and not listed in substitutions"
        for flag, (theirs, ours) in found.items()
        if flag not in listed
    ]
    stale = [f"{name}: substitution {flag!r} is listed, but the flag equals the seed's" for flag in listed]
    return unexplained + [line for line, flag in zip(stale, listed, strict=True) if flag not in found]


def _provenance(recipe: Recipe) -> str:
    seed = recipe.seed
    if seed is None:
        return "ours"
    if not seed.get("command"):
        return "flags not checked: the row's command is a run.sh on the Hub"
    changed = len(seed.get("substitutions", {}))
    text = f"seed {seed['command']}" + (f" +{changed} substitution(s)" if changed else " verbatim")
    if seed.get("model_card"):
        text += ", hyperparameters checked against the model card"
    if seed.get("own_command"):
        text += "; the row's own command is not readable here"
    return text


def _describe(recipe: Recipe) -> str:
    figures = ", ".join(f"{k} {v}" for k, v in recipe.published.items() if k != "source" and v is not None)
    line = f"{recipe.name:52s} {recipe.nproc} proc  {recipe.description}" + (f"  [{figures}]" if figures else "")
    return f"{line}\n{'':52s} ({_provenance(recipe)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_examples.sh", description="List, print or run a recipe.", epilog="Flags after -- go to the script."
    )
    parser.add_argument("name", help="'list', or a recipe name (configs/TASK/NAME.json)")
    parser.add_argument("--nproc", type=int, default=None, help="Processes/devices instead of the published count.")
    parser.add_argument("--dry-run", "--dry_run", action="store_true", help="Print the exact commands only.")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, unknown = parser.parse_known_args(argv[:cut])
    extra = unknown + argv[cut + 1 :]  # flags for the script, after `--` or not ours
    if args.name == "list":
        for recipe in list_recipes():
            print(_describe(recipe))
        return 0
    recipe = find_recipe(args.name)
    command, env = recipe_command(recipe, args.nproc, extra)
    if recipe.note:
        print(f"# note: {recipe.note}", file=sys.stderr)
    if recipe.requires:
        print(f"# requires: {recipe.requires}", file=sys.stderr)
    print(f"# {_provenance(recipe)}", file=sys.stderr)
    for flag, why in (recipe.seed or {}).get("substitutions", {}).items():
        print(f"#   --{flag}: {why}", file=sys.stderr)
    lines = recipe.prepare + [" ".join(f"{k}={v}" for k, v in env.items()) + (" " if env else "") + shlex.join(command)]
    if args.dry_run:
        print("\n".join(lines))
        return 0
    for step in recipe.prepare:
        print(f"+ {step}", file=sys.stderr, flush=True)
        subprocess.run(step, shell=True, check=True)
    print(f"+ {lines[-1]}", file=sys.stderr, flush=True)
    return subprocess.run(command, env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main())
