"""Word n-gram language models for CTC decoding, built with KenLM's own ``lmplz`` and ``build_binary``.

``scripts/install_lm.sh`` builds both tools from the kenlm source distribution on PyPI and installs the ``lm`` extra
(pyctcdecode and the kenlm Python module). A model is a folder: ``lm.arpa`` (what lmplz wrote), ``lm.bin`` (KenLM's
binary form, what decoding loads) and ``unigrams.txt`` (the words, which pyctcdecode cannot read from a binary).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from pathlib import Path

from asr_finetune.errors import UsageError, require_module
from asr_finetune.files import atomic_dir, refuse_to_replace

logger = logging.getLogger(__name__)

LM_EXTRA_HINT = "install the n-gram LM extra: bash scripts/install_lm.sh (pyctcdecode, kenlm, KenLM's lmplz)"
ARPA, BINARY, UNIGRAMS = "lm.arpa", "lm.bin", "unigrams.txt"
KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"


def kenlm_tool(name: str) -> str:
    """The path of KenLM's ``lmplz`` or ``build_binary``: beside this Python (or the one a venv was made from, where
    scripts/install_lm.sh put it), then on PATH."""
    folders = (Path(sys.executable).parent, Path(sysconfig.get_path("scripts")), Path(sys.base_prefix) / "bin")
    found = next((str(folder / name) for folder in folders if (folder / name).is_file()), None) or shutil.which(name)
    if not found:
        raise UsageError(f"KenLM's {name} is not installed: {LM_EXTRA_HINT}.")
    return found


def require_decoder() -> None:
    """Refuse in one line when pyctcdecode or the kenlm module is missing."""
    for module in ("kenlm", "pyctcdecode"):
        require_module(module, "CTC decoding with an n-gram LM", LM_EXTRA_HINT)


def build_ngram_lm(texts: Iterable[str], order: int, output_dir: str | Path, prune: list[int] | None = None) -> Path:
    """Estimate an order-``order`` word n-gram (modified Kneser-Ney) on ``texts``, one sentence each, and write the
    model folder ``output_dir`` whole (or not at all). Returns the path of its ``lm.bin``."""
    if not 2 <= order <= 6:
        raise UsageError(f"--lm_order {order}: give 2 to 6 (KenLM's Python module is built for up to 6).")
    lines = [" ".join(text.split()) for text in texts]
    lines = [line for line in lines if line]
    if not lines:
        raise UsageError("No text to build an n-gram LM from: every transcript is empty.")
    words = sorted({word for line in lines for word in line.split()})
    lmplz, build_binary = kenlm_tool("lmplz"), kenlm_tool("build_binary")
    output_dir = Path(output_dir)
    refuse_to_replace(output_dir, (ARPA, BINARY), "an n-gram LM")
    with atomic_dir(output_dir) as staging, tempfile.TemporaryDirectory() as scratch:
        command = [lmplz, "-o", str(order), "--discount_fallback", "-T", scratch, "-S", "20%"]
        if prune:
            command += ["--prune", *map(str, prune)]
        run_tool(command, staging / ARPA, stdin="\n".join(lines) + "\n")
        run_tool([build_binary, str(staging / ARPA), str(staging / BINARY)])
        (staging / UNIGRAMS).write_text("\n".join(words) + "\n", encoding="utf-8")
    logger.info("%d-gram LM of %d sentences, %d words: %s", order, len(lines), len(words), output_dir / BINARY)
    return output_dir / BINARY


def run_tool(command: list[str], stdout_file: Path | None = None, stdin: str | None = None) -> None:
    """Run a KenLM tool; its own error message (the end of its stderr) if it fails."""
    with open(stdout_file, "w", encoding="utf-8") if stdout_file else open("/dev/null", "w") as out:
        done = subprocess.run(command, input=stdin, stdout=out, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise UsageError(f"{Path(command[0]).name} failed (exit {done.returncode}): {tail}")


def find_lm(path: str | Path) -> tuple[Path, list[str] | None]:
    """The KenLM model to load for ``path`` (a model folder, an .arpa or a .bin file) and its words, if known."""
    path = Path(path)
    if path.is_dir():
        model = path / BINARY if (path / BINARY).is_file() else path / ARPA
    else:
        model = path
    if not model.is_file():
        raise UsageError(f"--lm_path {path}: no KenLM model there (a folder of build_ngram_lm.py, an .arpa or a .bin).")
    with open(model, "rb") as handle:
        head = handle.read(4096)
    if not (head.startswith(KENLM_BINARY_MAGIC) or b"\\data\\" in head):
        raise UsageError(f"--lm_path {model}: neither an ARPA file (no \\data\\ header) nor a KenLM binary.")
    unigrams_file = model.parent / UNIGRAMS
    if unigrams_file.is_file():
        return model, unigrams_file.read_text(encoding="utf-8").split()
    if model.suffix == ".arpa":
        return model, None  # pyctcdecode reads the words from the ARPA file itself
    logger.warning("%s is a binary LM without %s beside it: out-of-vocabulary words cannot be told apart, which "
                   "makes decoding worse. Give the .arpa or add a %s (one word per line).", model, UNIGRAMS, UNIGRAMS)
    return model, None
