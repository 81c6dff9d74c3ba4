"""Command-line arguments: dataclass groups shared by the entry scripts, and legacy-flag translation.

A single ``.json`` argument stands for all flags, as in the Hugging Face example scripts.
Flags that the published recipes pass but the installed transformers no longer knows are
translated here, in one table, with one log line each.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from asr_finetune.errors import UsageError

logger = logging.getLogger(__name__)

RECIPE_KEY = "_recipe"
"""Key of a config file that describes the recipe (published figures, launcher); not a flag."""

FRESH_START = "false"
"""``--resume_from_checkpoint false``: ignore checkpoints in output_dir and start from the model."""


# ---------------------------------------------------------------------------------------------- legacy flags


@dataclass(frozen=True)
class LegacyFlag:
    """A flag the recipes pass that the installed TrainingArguments no longer has (or, with ``always``, one whose
    meaning we replace on every transformers version)."""

    old: str
    gone_field: str
    translate: Callable[[Any], dict[str, Any]]
    message: str
    is_switch: bool = False
    always: bool = False


TRUE_WORDS = ("true", "yes", "t", "y", "1")
FALSE_WORDS = ("false", "no", "f", "n", "0")
"""The words HfArgumentParser takes for a boolean flag's value; every boolean we read follows them."""


def is_bool_word(text: str) -> bool:
    return text.strip().lower() in TRUE_WORDS + FALSE_WORDS


def parse_bool(value: Any) -> bool:
    """A flag value as a boolean: ``True`` (a bare switch) or one of :data:`TRUE_WORDS`."""
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return bool(value)


@dataclass
class CommandLine:
    """A command line, read once: the flags as typed, or a ``.json`` file that stands for them (further flags after
    it override its values). Both the backend choice and the parser read it from here."""

    argv: list[str]
    config: dict[str, Any] | None = None

    @classmethod
    def read(cls, argv: Sequence[str] | None = None) -> CommandLine:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv and argv[0].endswith(".json"):
            return cls(argv, read_config_file(argv[0]))
        return cls(argv)

    def parser_argv(self) -> list[str]:
        """The flags to parse: the config file's as a command line, then the ones typed after it."""
        if self.config is None:
            return list(self.argv)
        return config_to_argv(self.config, self.argv[0]) + self.argv[1:]

    def flags(self) -> dict[str, Any]:
        """Flag names and values; a bare switch is True."""
        argv = self.parser_argv()
        flags: dict[str, Any] = {}
        for index, token in enumerate(argv):
            if token.startswith("--"):
                name, has_value, value = token[2:].partition("=")
                following = argv[index + 1] if index + 1 < len(argv) else None
                if has_value:
                    flags[name] = value
                elif following is not None and not following.startswith("--"):
                    flags[name] = following
                else:
                    flags[name] = True
        return flags

    def is_on(self, name: str) -> bool:
        return parse_bool(self.flags().get(name, False))


def config_to_argv(config: dict[str, Any], source: str = "the config") -> list[str]:
    """A JSON config's flags as a command line, so that its values are parsed and type-checked exactly as typed
    flags are: booleans as true/false, lists spread out, objects as JSON text. A null value is refused by name."""
    argv: list[str] = []
    for key, value in config.items():
        if value is None:
            raise UsageError(f'{source}: "{key}" is null; give it a value or leave the key out.')
        if isinstance(value, bool):
            argv += [f"--{key}", "true" if value else "false"]
        elif isinstance(value, list):
            argv += [f"--{key}", *(json.dumps(item) if isinstance(item, dict) else str(item) for item in value)]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


LEGACY_FLAGS = (
    LegacyFlag(
        "evaluation_strategy",
        "evaluation_strategy",
        lambda v: {"eval_strategy": v},
        "--evaluation_strategy is --eval_strategy in this transformers; using --eval_strategy {value}.",
    ),
    LegacyFlag(
        "group_by_length",
        "group_by_length",
        lambda v: {"train_sampling_strategy": "group_by_length"} if parse_bool(v) else {},
        "--group_by_length is --train_sampling_strategy group_by_length in this transformers; batches are "
        "grouped by audio duration read from file headers.",
        is_switch=True,
    ),
    LegacyFlag(
        "overwrite_output_dir",
        "overwrite_output_dir",
        lambda v: {"resume_from_checkpoint": FRESH_START} if parse_bool(v) else {},
        "--overwrite_output_dir: starting fresh from the model instead of resuming from checkpoints in output_dir "
        "(same as --resume_from_checkpoint false).",
        is_switch=True,
        always=True,  # transformers 4.x has the field, but its Trainer would still resume from our checkpoints
    ),
    LegacyFlag(
        "no_cuda",
        "no_cuda",
        lambda v: {"use_cpu": v} if parse_bool(v) else {},
        "--no_cuda is --use_cpu in this transformers; using --use_cpu.",
        is_switch=True,
    ),
    LegacyFlag(
        "use_auth_token",
        "use_auth_token",
        lambda v: {},
        "--use_auth_token is not needed: the Hub login saved by `hf auth login` is used; pass --token to give another.",
        is_switch=True,
    ),
)


def _active_legacy_flags(training_fields: set[str]) -> dict[str, LegacyFlag]:
    return {flag.old: flag for flag in LEGACY_FLAGS if flag.always or flag.gone_field not in training_fields}


def translate_legacy_argv(argv: Sequence[str], training_fields: set[str]) -> tuple[list[str], list[str]]:
    """Rewrite legacy flags of a command line; returns the new argv and one note per translation."""
    active = _active_legacy_flags(training_fields)
    out: list[str] = []
    notes = []
    index = 0
    while index < len(argv):
        token = argv[index]
        name, has_value, inline = token.partition("=")
        flag = active.get(name[2:]) if name.startswith("--") else None
        if flag is None:
            out.append(token)
            index += 1
            continue
        if has_value:
            value: Any = inline
            index += 1
        elif flag.is_switch:
            following = argv[index + 1] if index + 1 < len(argv) else ""
            is_bool = is_bool_word(following)
            value = following if is_bool else True
            index += 2 if is_bool else 1
        else:
            value = argv[index + 1] if index + 1 < len(argv) else ""
            index += 2
        translated = flag.translate(value)
        for key, new_value in translated.items():
            out += [f"--{key}", str(new_value)]
        if not flag.is_switch or parse_bool(value):  # "--overwrite_output_dir false" asks for nothing: no note
            notes.append(flag.message.format(value=value))
    return out, notes


TRAINER_GROUP = "Trainer (transformers' TrainingArguments)"
HELP_OVERRIDES = {
    "resume_from_checkpoint": "Default: resume from the newest complete checkpoint in --output_dir (a rerun of a "
    "command goes on where it stopped, or reports that it is complete). A checkpoint folder: resume from it. "
    "true/latest: the newest, an error if there is none. false/no/none/fresh: start fresh from the model, "
    "ignoring the checkpoints in --output_dir (as --overwrite_output_dir did).",
}


def build_parser(
    dataclass_types: Sequence[type], extra_help: dict[str, dict[str, str]] | None = None
) -> HfArgumentParser:
    """The parser of a script, its ``--help`` in sections: each of our argument groups under its heading, the
    legacy flags we translate, ``extra_help`` (title -> {flag: help}, e.g. the Gaudi flags), the Trainer's last."""
    # No abbreviations: argparse would take --learning_rat for --learning_rate (and --do for whichever it likes).
    parser = HfArgumentParser(list(dataclass_types), allow_abbrev=False)
    parser.usage = "%(prog)s [--flag VALUE ...]  |  %(prog)s FLAGS.json  (every flag of every section below)"
    trainer = parser.add_argument_group(TRAINER_GROUP)
    for action in list(parser._optionals._group_actions):  # fields of dataclasses without a group: the Trainer's
        if action.dest != "help":
            parser._optionals._group_actions.remove(action)
            trainer._group_actions.append(action)
    for action in parser._actions:
        if action.dest in HELP_OVERRIDES:
            action.help = HELP_OVERRIDES[action.dest]
        flag = action.option_strings[0] if action.option_strings else ""
        if flag.startswith("--no_") and action.dest == flag[5:]:  # HfArgumentParser's "--no_X" copies X's help
            action.help = f"Turn --{action.dest} off."
    # Listed for --help only: they are translated (or refused) before parsing, never parsed themselves.
    fields = {f.name for cls in dataclass_types if dataclasses.is_dataclass(cls) for f in dataclasses.fields(cls)}
    legacy = {old: flag.message.format(value="VALUE") for old, flag in _active_legacy_flags(fields).items()}
    sections = {"Flags of older transformers, translated (one log line each)": legacy, **(extra_help or {})}
    for title, flags in sections.items():
        group = parser.add_argument_group(title)
        for name, text in flags.items():
            if f"--{name}" not in parser._option_string_actions:
                group.add_argument(f"--{name}", dest=f"_help_only_{name}", help=text, metavar="VALUE", nargs="?",
                                   default=argparse.SUPPRESS)
    parser._action_groups.append(parser._action_groups.pop(parser._action_groups.index(trainer)))
    return parser


def parse_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | CommandLine | None = None,
    extra_help: dict[str, dict[str, str]] | None = None,
) -> tuple[Any, ...]:
    """Parse a command line (or one .json file) into the given dataclasses, translating legacy flags."""
    command = argv if isinstance(argv, CommandLine) else CommandLine.read(argv)
    training_fields = {
        f.name for cls in dataclass_types if dataclasses.is_dataclass(cls) for f in dataclasses.fields(cls)
    }
    parser = build_parser(dataclass_types, extra_help)
    if command.config is not None:
        check_config_shapes(command.config, command.argv[0], parser)
    try:
        argv, notes = translate_legacy_argv(command.parser_argv(), training_fields)
        _log_notes(notes)
        argv = _complete_bare_switches(argv, dataclass_types)
        parsed = tuple(parser.parse_args_into_dataclasses(args=argv))
    except UsageError:
        raise
    except ValueError as err:  # a dataclass's own check, or flags no argument group takes
        raise UsageError(str(err)) from err
    except importlib.metadata.PackageNotFoundError as err:  # --deepspeed without deepspeed: checked while parsing
        raise UsageError(f"A flag of this command needs a package that is not installed: {err}") from err
    for group in parsed:
        check_training_arguments(group)
    return parsed


def check_config_shapes(config: dict[str, Any], source: str, parser: HfArgumentParser) -> None:
    """A list in a JSON config for a flag that takes one value is refused by name (typed out, it would read as a
    flag followed by stray words)."""
    for key, value in config.items():
        action = parser._option_string_actions.get(f"--{key}")
        if isinstance(value, list) and action is not None and action.nargs not in ("+", "*"):
            raise UsageError(f'{source}: "{key}" takes one value, not a list ({json.dumps(value)}).')


def read_config_file(path: str) -> dict[str, Any]:
    """The flags of a ``.json`` config (its ``_recipe`` section removed); an error naming the file if unreadable."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"Cannot read the config file {path}: {err.strerror}.") from err
    except json.JSONDecodeError as err:
        raise UsageError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}.") from err
    if not isinstance(config, dict):
        raise UsageError(f"{path} must hold one JSON object of flag names and values.")
    config.pop(RECIPE_KEY, None)
    return config


def check_training_arguments(args: Any) -> None:
    """Refuse settings of (Trainer) TrainingArguments that would silently do something else than asked."""
    if not hasattr(args, "max_steps") or not hasattr(args, "fp16"):
        return
    if args.max_steps == 0 or args.max_steps < -1:
        raise UsageError(
            f"--max_steps {args.max_steps}: give a positive number of optimizer steps (or leave it out to train "
            "for --num_train_epochs)."
        )



def _complete_bare_switches(argv: list[str], dataclass_types: Sequence[type]) -> list[str]:
    """``--flag`` alone means ``--flag true`` also for ``bool | None = None`` fields (unset = "the model's own
    setting"), which HfArgumentParser would otherwise make demand a value."""
    names = {
        f"--{f.name}"
        for cls in dataclass_types
        if dataclasses.is_dataclass(cls)
        for f in dataclasses.fields(cls)
        if f.default is None and str(f.type).replace(" ", "") in ("bool|None", "Optional[bool]")
    }
    out: list[str] = []
    for index, token in enumerate(argv):
        out.append(token)
        following = argv[index + 1] if index + 1 < len(argv) else "--"
        if token in names and following.startswith("--"):
            out.append("true")
    return out


def _log_notes(notes: list[str]) -> None:
    for note in dict.fromkeys(notes):
        logger.warning(note)
