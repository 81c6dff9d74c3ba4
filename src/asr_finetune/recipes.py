"""Recipes: one config per published result (configs/*.json), listed, printed and run by run_examples.sh."""

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

from .args import RECIPE_KEY
from .launch import launch_plan

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class Recipe:
    """A config file: the script's flags plus what the recipe reproduces and how it is launched."""

    name: str
    path: Path
    script: str
    nproc: int
    launcher: str
    description: str
    published: dict[str, Any]
    args: dict[str, Any]
    prepare: list[str] = field(default_factory=list)
    note: str = ""
    requires: str = ""


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    config = json.loads(path.read_text(encoding="utf-8"))
    meta = config.pop(RECIPE_KEY, None)
    if meta is None:
        raise ValueError(f"{path} has no {RECIPE_KEY!r} section: it is a plain flag file, not a recipe.")
    return Recipe(
        name=path.stem,
        path=path,
        script=meta["script"],
        nproc=int(meta.get("nproc", 1)),
        launcher=meta.get("launcher", "python"),
        description=meta.get("description", ""),
        published=meta.get("published", {}),
        args=config,
        prepare=list(meta.get("prepare", [])),
        note=meta.get("note", ""),
        requires=meta.get("requires", ""),
    )


def list_recipes(config_dir: str | Path = CONFIG_DIR) -> list[Recipe]:
    recipes = []
    for path in sorted(Path(config_dir).glob("*.json")):
        if RECIPE_KEY in json.loads(path.read_text(encoding="utf-8")):
            recipes.append(load_recipe(path))
    return recipes


def find_recipe(name: str, config_dir: str | Path = CONFIG_DIR) -> Recipe:
    path = Path(config_dir) / f"{name.removesuffix('.json')}.json"
    if not path.is_file():
        names = ", ".join(recipe.name for recipe in list_recipes(config_dir))
        raise SystemExit(f"No recipe {name!r}. Recipes: {names}")
    return load_recipe(path)


def script_arguments(script: str) -> tuple[type, ...]:
    """The dataclasses an entry script parses (with the stock TrainingArguments class last where it has one)."""
    from . import args
    from .backends import training_arguments_class

    groups = {
        "run_speech_recognition_ctc.py": (
            args.CTCModelArguments, args.CTCDataArguments, args.BatchingArguments, training_arguments_class()
        ),
        "run_speech_recognition_seq2seq.py": (
            args.Seq2SeqModelArguments, args.Seq2SeqDataArguments, args.BatchingArguments,
            training_arguments_class(seq2seq=True),
        ),
        "run_wav2vec2_pretraining_no_trainer.py": (args.PretrainingArguments, args.BatchingArguments),
    }
    name = Path(script).name
    if name not in groups:
        raise ValueError(f"No argument groups known for {script}.")
    return groups[name]


def args_to_argv(args: dict[str, Any]) -> list[str]:
    """Flags for a command line: booleans as true/false, lists spread out."""
    argv: list[str] = []
    for key, value in args.items():
        if value is None:
            continue
        if isinstance(value, bool):
            argv += [f"--{key}", "true" if value else "false"]
        elif isinstance(value, list):
            argv += [f"--{key}", *map(str, value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def recipe_command(recipe: Recipe, nproc: int | None = None, extra: list[str] | None = None) -> tuple[list[str], dict]:
    """The exact command (and extra environment) that runs a recipe on ``nproc`` processes."""
    nproc = nproc or recipe.nproc
    script_args = args_to_argv(recipe.args) + list(extra or [])
    if nproc == 1:
        return [sys.executable, recipe.script, *script_args], {}
    plan = launch_plan(recipe.script, script_args, world_size=nproc, use_mpi=recipe.launcher == "gaudi_spawn_mpi")
    return plan.command, plan.env


def _describe(recipe: Recipe) -> str:
    figures = ", ".join(f"{k} {v}" for k, v in recipe.published.items() if k != "source" and v is not None)
    return f"{recipe.name:52s} {recipe.nproc} proc  {recipe.description}" + (f"  [{figures}]" if figures else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_examples.sh", description="List, print or run a recipe.", epilog="Flags after -- go to the script."
    )
    parser.add_argument("name", help="'list', or a recipe name (configs/NAME.json)")
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
