"""How a seq2seq model decodes a clip, the same in evaluation and in ``asr-transcribe``.

- The settings (beams, language, suppressed tokens) are the model's ``generation_config.json``: what evaluation
  decoded with is saved with the model (:func:`record_decoding`), so transformers' ``pipeline()`` reads them too.
- New tokens are capped by the clip's duration (:func:`token_cap`): a hypothesis that loops (``5.5.5.5...``) ends
  after a few tokens more than the clip can hold, not at the decoder's 448-token limit.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

logger = logging.getLogger(__name__)

TOKENS_PER_SECOND = 10.0
EXTRA_TOKENS = 10


def token_cap(seconds: float) -> int:
    """The most new tokens a clip of ``seconds`` may produce: 10 a second plus 10. Read English runs at 3-5
    Whisper tokens a second, digits and spelled-out letters at up to 7."""
    return math.ceil(TOKENS_PER_SECOND * max(seconds, 0.0)) + EXTRA_TOKENS


def capped(gen_kwargs: dict[str, Any], seconds: float, model: Any) -> dict[str, Any]:
    """``gen_kwargs`` with ``max_new_tokens`` no more than the cap for a clip (or batch) of ``seconds``, nor than
    ``max_length`` / ``max_new_tokens`` already asked for (or the model's own ``max_length``)."""
    kwargs = dict(gen_kwargs)
    limits = [token_cap(seconds)]
    if kwargs.get("max_new_tokens") is not None:
        limits.append(int(kwargs.pop("max_new_tokens")))
    max_length = kwargs.pop("max_length", None) or getattr(model.generation_config, "max_length", None)
    if max_length:
        limits.append(int(max_length))
    kwargs["max_new_tokens"] = max(1, min(limits))
    return kwargs


class CutCount(StoppingCriteria):
    """Counts the hypotheses still unfinished (no end-of-text yet) when generation reaches ``max_new_tokens``: the
    clips whose text the cap cut. Stops nothing itself. With beams, counted per clip (unfinished beams over
    ``beams``, rounded up)."""

    def __init__(self, max_new_tokens: int, stop_ids: list[int], beams: int = 1) -> None:
        self.max_new_tokens, self.beams = max_new_tokens, max(1, beams)
        self.stop_ids = torch.tensor(stop_ids, dtype=torch.long)
        self.cut = 0
        self._start: int | None = None
        self._finished: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        length = input_ids.shape[-1]
        if self._start is None or self._finished is None or self._finished.shape[0] != input_ids.shape[0]:
            self._start = length - 1
            self._finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        self._finished |= torch.isin(input_ids[:, -1], self.stop_ids.to(input_ids.device))
        if length - self._start >= self.max_new_tokens:
            self.cut += math.ceil(int((~self._finished).sum()) / self.beams)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def stop_ids(model: Any) -> list[int]:
    """The token ids that end a hypothesis (end-of-text; the pad id finished rows are filled with)."""
    generation = model.generation_config
    ids = generation.eos_token_id
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids]
    return [int(i) for i in ids + [generation.pad_token_id] if i is not None]


def with_cut_count(gen_kwargs: dict[str, Any], model: Any) -> tuple[dict[str, Any], CutCount]:
    """``gen_kwargs`` (already :func:`capped`) with a :class:`CutCount` among its stopping criteria."""
    beams = gen_kwargs.get("num_beams") or getattr(model.generation_config, "num_beams", 1) or 1
    counter = CutCount(gen_kwargs["max_new_tokens"], stop_ids(model), beams)
    criteria = StoppingCriteriaList(list(gen_kwargs.get("stopping_criteria") or []) + [counter])
    return {**gen_kwargs, "stopping_criteria": criteria}, counter


def record_decoding(model: Any, num_beams: int | None) -> None:
    """Make ``--generation_num_beams`` the model's own (its ``generation_config.json`` is saved with every
    checkpoint), so the saved model decodes as its evaluation did, in ``asr-transcribe`` and ``pipeline()``."""
    generation = model.generation_config
    current = generation.num_beams or 1
    if num_beams is None or num_beams == current:
        return
    logger.info("--generation_num_beams %d: the model's generation_config.json says num_beams %d; it will say %d "
                "(asr-transcribe and pipeline() decode as evaluation does).", num_beams, current, num_beams)
    generation.num_beams = num_beams
