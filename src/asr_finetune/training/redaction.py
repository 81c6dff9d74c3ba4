"""Keep secrets out of what a run writes: the model card's command line, training_args.bin, logs, trackers."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

SECRET_FLAGS = ("token", "hub_token", "use_auth_token", "hf_token", "push_to_hub_token", "wandb_api_key", "api_key")
"""Flags whose value is a credential (``--unk_token``, ``--pad_token`` and tokenizer names are not)."""
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
HUB_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
REDACTED = "<redacted>"


def _secret_values() -> list[str]:
    return [value for name in SECRET_ENV if (value := os.environ.get(name, "")) and len(value) >= 8]


def redact_text(text: str) -> str:
    """``text`` with Hub tokens and the values of secret environment variables replaced."""
    for value in _secret_values():
        text = text.replace(value, REDACTED)
    return HUB_TOKEN_RE.sub(REDACTED, text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the value of every credential flag (and anything shaped like a Hub token) replaced."""
    out: list[str] = []
    hide_next = False
    for token in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, has_value, _ = token.partition("=")
        if name.startswith("--") and name[2:].replace("-", "_") in SECRET_FLAGS:
            if has_value:
                out.append(f"{name}={REDACTED}")
            else:
                out.append(token)
                hide_next = True
            continue
        out.append(redact_text(token))
    return out


@contextlib.contextmanager
def secrets_removed(args: Any) -> Iterator[None]:
    """Blank the credential fields of an arguments object while it is pickled or logged, then put them back."""
    saved = {name: getattr(args, name) for name in SECRET_FLAGS if getattr(args, name, None)}
    for name in saved:
        setattr(args, name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(args, name, value)
