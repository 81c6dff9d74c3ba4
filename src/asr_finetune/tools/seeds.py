"""The published commands that recipes cite, read back into flags, and what a recipe changes in them.

A recipe's ``_recipe.seed`` names a file in ``configs/seed_commands/`` that holds the published text verbatim:

- a shell command (``.sh``): launcher, script and flags, read the way a shell reads them;
- Python (``.py``, the task guide and the warm-start snippet): the keyword arguments of the calls listed in
  :data:`CALL_FLAGS` become flags, their positional arguments the flags named there;
- a model card's hyperparameter list (``model_card_*.txt``), for a row whose own command lives on the Hub:
  learning rate, batch sizes, warm-up, epochs, devices, mixed precision.

:func:`seed_differences` lists every flag where the recipe and its seed differ; a recipe must explain each one in
``seed.substitutions`` (a dataset renamed on the Hub, ``--push_to_hub`` left out, ...), and nothing else.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEED_DIR = Path("configs") / "seed_commands"

MISSING = "<absent>"
"""Stands for a flag one side does not pass."""

CALL_FLAGS: dict[str, tuple[str, ...]] = {
    # dotted call name -> the flags its positional arguments stand for; its keyword arguments are flags as named
    "TrainingArguments": (),
    "load_dataset": ("dataset_name",),
    "AutoModelForCTC.from_pretrained": ("model_name_or_path",),
    "SpeechEncoderDecoderModel.from_encoder_decoder_pretrained": ("encoder", "decoder"),
    "model.save_pretrained": ("output_dir",),
}
KEYWORD_FLAGS = {("load_dataset", "name"): "dataset_config_name", ("load_dataset", "split"): None}
"""Keyword arguments that are another flag (or none: ``split`` of the task guide is re-split in code)."""

CARD_FLAGS = {
    # model-card hyperparameter -> (recipe flag, the value when the recipe leaves the flag out)
    "learning_rate": ("learning_rate", None),
    "train_batch_size": ("per_device_train_batch_size", 8),
    "eval_batch_size": ("per_device_eval_batch_size", 8),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", 1),
    "lr_scheduler_warmup_steps": ("warmup_steps", 0),
    "num_epochs": ("num_train_epochs", 3),
    "num_devices": ("nproc", 1),
    "mixed_precision_training": ("fp16", False),
    "seed": ("seed", 42),
}
CARD_DEFAULTS = {"gradient_accumulation_steps": "1", "num_devices": "1", "mixed_precision_training": "no"}
"""What a Trainer-written card's missing line means."""


@dataclass
class SeedCommand:
    """A published command: how it was launched, on how many processes, which script, which flags."""

    launcher: str
    nproc: int | None
    script: str
    flags: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)


ENV_ASSIGNMENT = re.compile(r"([A-Z][A-Z0-9_]*)=(\S*)")


def _launcher(tokens: list[str]) -> tuple[str, int | None]:
    words = [t for t in tokens if not ENV_ASSIGNMENT.fullmatch(t)]  # PT_HPU_LAZY_MODE=1 python ...
    if words == ["python"]:
        return "python", 1
    if words[:2] == ["accelerate", "launch"]:
        return "accelerate", int(words[words.index("--num_processes") + 1]) if "--num_processes" in words else None
    if words[:1] == ["torchrun"] or "torch.distributed.launch" in words or "torch.distributed.run" in words:
        # torch.distributed.launch is torchrun's deprecated name; both start --nproc_per_node processes
        return "torchrun", int(words[words.index("--nproc_per_node") + 1])
    if any(Path(w).name == "gaudi_spawn.py" for w in words):
        kind = "gaudi_spawn_mpi" if "--use_mpi" in words else "gaudi_spawn"
        return kind, int(words[words.index("--world_size") + 1])
    raise ValueError(f"Unknown launcher: {' '.join(tokens)!r}")


def read_flags(tokens: list[str]) -> dict[str, Any]:
    """``--name value``, ``--name=value``, ``--name v1 v2`` (a list) and a bare ``--name`` (true)."""
    flags: dict[str, Any] = {}
    name = None
    for token in tokens:
        if token.startswith("--"):
            name, _, value = token[2:].partition("=")
            flags[name] = [value] if value else []
        elif name is None:
            raise ValueError(f"Value {token!r} before any flag.")
        else:
            flags[name].append(token)
    return {k: True if not v else v[0] if len(v) == 1 else v for k, v in flags.items()}


def parse_shell_command(text: str) -> SeedCommand:
    """A command as a shell reads it: comment lines and line continuations dropped, quotes and escapes resolved."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    tokens = shlex.split(re.sub(r"\\\n", " ", "\n".join(lines) + "\n"))
    at = next(i for i, t in enumerate(tokens[1:], 1) if t.endswith(".py") and Path(t).name != "gaudi_spawn.py")
    launcher, nproc = _launcher(tokens[:at])
    env = dict(m.groups() for t in tokens[:at] if (m := ENV_ASSIGNMENT.fullmatch(t)))
    return SeedCommand(launcher, nproc, Path(tokens[at]).name, read_flags(tokens[at + 1 :]), env)


def _call_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_call_name(node.value)}.{node.attr}"
    return ""


def parse_python(text: str) -> SeedCommand:
    """The flags a published Python snippet sets through the calls in :data:`CALL_FLAGS` (first call of each)."""
    code = "\n".join(re.sub(r"^(>>>|\.\.\.) ?", "", line) for line in text.splitlines())
    tree = ast.parse(code)
    names: dict[str, Any] = {}
    flags: dict[str, Any] = {}
    seen: set[str] = set()

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        return ast.literal_eval(node)

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            names.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: n.lineno):
        call = _call_name(node.func)
        if call not in CALL_FLAGS or call in seen:
            continue
        seen.add(call)
        flags.update({flag: value(arg) for flag, arg in zip(CALL_FLAGS[call], node.args, strict=False)})
        for keyword in node.keywords:
            flag = KEYWORD_FLAGS.get((call, keyword.arg), keyword.arg)
            try:
                if flag is not None:
                    flags[flag] = value(keyword.value)
            except ValueError:  # not a literal (pad_token_id=processor.tokenizer.pad_token_id): set by the script
                continue
    return SeedCommand("python", None, "", flags)


def read_seed(name: str, seed_dir: str | Path = SEED_DIR) -> SeedCommand:
    path = Path(seed_dir) / name
    text = path.read_text(encoding="utf-8")
    return parse_python(text) if path.suffix == ".py" else parse_shell_command(text)


def read_model_card(name: str, seed_dir: str | Path = SEED_DIR) -> dict[str, str]:
    """``- key: value`` lines of a model card's hyperparameter list (a missing line filled in as the card means it)."""
    text = (Path(seed_dir) / name).read_text(encoding="utf-8")
    found = dict(re.findall(r"^- (\w+): (.+)$", text, flags=re.MULTILINE))
    return {**CARD_DEFAULTS, **found}


def _canonical(value: Any) -> list[Any]:
    """One form for a flag's value however it was written: ``"3e-4"`` = 0.0003, ``"True"`` = true, a list or not."""
    out: list[Any] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool) or item == MISSING:
            out.append(item)
        elif isinstance(item, (int, float)):
            out.append(float(item))
        elif str(item).lower() in ("true", "false"):
            out.append(str(item).lower() == "true")
        else:
            try:
                out.append(float(item))
            except ValueError:
                out.append(str(item))
    return out


def differences(seed: dict[str, Any], ours: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{flag: (seed's value, ours)}`` for every flag passed with another value, or by one side only."""
    diff = {}
    for flag in dict.fromkeys([*seed, *ours]):
        theirs, mine = seed.get(flag, MISSING), ours.get(flag, MISSING)
        if _canonical(theirs) != _canonical(mine):
            diff[flag] = (theirs, mine)
    return diff


def seed_differences(
    args: dict[str, Any], launcher: str, nproc: int, env: dict[str, str], seed: SeedCommand
) -> dict[str, tuple]:
    """Where a recipe (its flags, launcher, process count and environment) departs from the seed command."""
    ours = dict(args)
    theirs = dict(seed.flags)
    if seed.script:  # a Python snippet says nothing about how it was launched
        theirs["launcher"], ours["launcher"] = seed.launcher, launcher
        theirs.update({f"env {k}": v for k, v in seed.env.items()})
        ours.update({f"env {k}": v for k, v in env.items()})
        if seed.nproc is not None:  # `accelerate launch` takes it from the user's accelerate config
            theirs["nproc"], ours["nproc"] = seed.nproc, nproc
    return differences(theirs, ours)


def model_card_differences(args: dict[str, Any], nproc: int, card: dict[str, str]) -> dict[str, tuple]:
    """Where a recipe's hyperparameters differ from those a model card lists."""
    theirs, ours = {}, {}
    for key, (flag, default) in CARD_FLAGS.items():
        if key not in card:
            continue
        value = card[key]
        if key == "mixed_precision_training":
            value = value == "Native AMP"
        theirs[flag] = value
        ours[flag] = nproc if flag == "nproc" else args.get(flag, default)
    return differences(theirs, ours)
