"""CTC beam search with an n-gram LM (pyctcdecode + KenLM), the way transformers does it: a
``Wav2Vec2ProcessorWithLM`` saved with the model, which ``pipeline()`` and ``asr-transcribe`` pick up.

:class:`LanguageModelArguments` are the CTC script's flags; :func:`make_decoder` builds the decoder over the CTC
vocab, :func:`beam_decode` decodes per-clip log-probabilities, :func:`tune_weights` grid-searches alpha and beta.
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr_finetune.errors import UsageError
from asr_finetune.evaluation.ngram_lm import find_lm, kenlm_tool, require_decoder

logger = logging.getLogger(__name__)

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
BETAS = (-1.0, 0.0, 1.0, 2.0, 3.0)


@dataclass
class LanguageModelArguments:
    """Decoding a CTC model with an n-gram LM (``bash scripts/install_lm.sh`` installs what it needs)."""

    _argument_group_name = "n-gram language model (CTC beam search; bash scripts/install_lm.sh)"

    lm_path: str | None = field(
        default=None,
        metadata={"help": "A KenLM model to decode with: a folder of build_ngram_lm.py, an .arpa or a .bin file."},
    )
    lm_order: int | None = field(
        default=None,
        metadata={"help": "Build an N-gram (2-6) from the training split's transcripts, as normalised for training, "
                  "into output_dir/language_model_source/ and decode with it."},
    )
    lm_alpha: float = field(default=0.5, metadata={"help": "Weight of the LM score."})
    lm_beta: float = field(default=1.0, metadata={"help": "Bonus per word (counters the LM's bias to short output)."})
    lm_beam_width: int = field(default=100, metadata={"help": "Beams kept at each frame."})
    lm_tune: bool = field(
        default=False,
        metadata={"help": f"Pick --lm_alpha and --lm_beta by WER on the eval split (grid alpha {ALPHAS} x beta "
                  f"{BETAS}); the pair found is saved with the model. Tuned on the split it reports: say so."},
    )

    def __post_init__(self) -> None:
        if self.lm_path and self.lm_order:
            raise UsageError("--lm_path and --lm_order both give an LM: keep one.")
        if self.lm_beam_width < 1:
            raise UsageError(f"--lm_beam_width {self.lm_beam_width}: give 1 or more.")
        if self.lm_tune and not self.enabled:
            raise UsageError("--lm_tune tunes an LM's weights: add --lm_path or --lm_order.")

    @property
    def enabled(self) -> bool:
        return bool(self.lm_path or self.lm_order)

    def check(self, training_args: Any, streaming: bool = False) -> None:
        """Refuse at start what would fail after training: missing tools, a missing model, no text to build from."""
        if not self.enabled:
            return
        do_train = training_args.do_train
        require_decoder()
        if self.lm_order:
            if streaming:
                raise UsageError("--lm_order builds the LM from the whole training text, which --streaming does not "
                                 "hold: build one with scripts/build_ngram_lm.py and pass --lm_path.")
            if not do_train:
                raise UsageError("--lm_order builds the LM from the training split: add --do_train, or build one with "
                                 "scripts/build_ngram_lm.py and pass --lm_path.")
            for tool in ("lmplz", "build_binary"):
                kenlm_tool(tool)
        if self.lm_path:
            find_lm(self.lm_path)


def ctc_alphabet(tokenizer: Any) -> list[str]:
    """The decoder's labels, one per CTC output in id order: the word delimiter as a space, the pad (CTC blank) as
    the empty string, every other token as itself."""
    vocab = tokenizer.get_vocab()
    labels = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        labels[index] = token
    blank, space = tokenizer.pad_token, getattr(tokenizer, "word_delimiter_token", None)
    return ["" if token == blank else " " if token == space else token for token in labels]


def make_decoder(tokenizer: Any, lm_path: str | Path, alpha: float, beta: float) -> Any:
    """pyctcdecode's beam search decoder over the CTC vocab, with the KenLM model at ``lm_path``."""
    require_decoder()
    from pyctcdecode import build_ctcdecoder

    model, unigrams = find_lm(lm_path)
    return build_ctcdecoder(ctc_alphabet(tokenizer), kenlm_model_path=str(model), unigrams=unigrams, alpha=alpha,
                            beta=beta)  # fmt: skip


def beam_decode(decoder: Any, log_probs: Sequence[np.ndarray], beam_width: int) -> list[str]:
    """The best beam's text for each clip (``log_probs``: one frames x vocab array per clip, no padding)."""
    return [" ".join(decoder.decode(clip, beam_width=beam_width).split()) for clip in log_probs]


def timed_decode(decoder: Any, log_probs: Sequence[np.ndarray], beam_width: int) -> tuple[list[str], float]:
    """:func:`beam_decode` and the seconds it took per clip."""
    start = time.perf_counter()
    texts = beam_decode(decoder, log_probs, beam_width)
    return texts, (time.perf_counter() - start) / max(len(log_probs), 1)


def tune_weights(
    decoder: Any, decode_all: Callable[[int], list[str]], wer_of: Callable[[list[str]], float], beam_width: int,
    alphas: Sequence[float] = ALPHAS, betas: Sequence[float] = BETAS,
) -> tuple[float, float, list[dict[str, float]]]:
    """The (alpha, beta) with the lowest ``wer_of(decode_all(beam_width))`` over the grid (ties: the first), and every
    point. ``decode_all`` decodes the whole evaluation with the decoder's current weights."""
    grid = []
    for alpha, beta in itertools.product(alphas, betas):
        decoder.reset_params(alpha=alpha, beta=beta)
        grid.append({"alpha": alpha, "beta": beta, "wer": wer_of(decode_all(beam_width))})
    best = min(grid, key=lambda point: point["wer"])
    decoder.reset_params(alpha=best["alpha"], beta=best["beta"])
    logger.info("--lm_tune: alpha %s, beta %s (WER %.4f) of %d pairs.", best["alpha"], best["beta"], best["wer"],
                len(grid))
    return best["alpha"], best["beta"], grid


def processor_with_lm(feature_extractor: Any, tokenizer: Any, decoder: Any) -> Any:
    """transformers' ``Wav2Vec2ProcessorWithLM``, to save with the model (:func:`save_processor_with_lm`)."""
    from transformers import Wav2Vec2ProcessorWithLM

    feature_extractor = copy.deepcopy(feature_extractor)
    # pipeline() attaches the LM decoder only when the feature extractor's saved dict names a *WithLM processor;
    # transformers 5 no longer writes that key itself (4.x did), so it is set here and saved in both places it reads.
    feature_extractor.processor_class = Wav2Vec2ProcessorWithLM.__name__
    return Wav2Vec2ProcessorWithLM(feature_extractor=feature_extractor, tokenizer=tokenizer, decoder=decoder)


def save_processor_with_lm(processor: Any, directory: str | Path) -> None:
    """The processor's files (tokenizer, alphabet.json, language_model/) and preprocessor_config.json, which 4.x
    readers and pipeline()'s LM check read."""
    processor.save_pretrained(str(directory))
    processor.feature_extractor.save_pretrained(str(directory))


def ships_lm(model: str) -> bool:
    """Whether a model dir (or Hub id) carries an n-gram LM for CTC decoding (its processor is a ``*WithLM``)."""
    from transformers.feature_extraction_utils import FeatureExtractionMixin

    try:
        config, _ = FeatureExtractionMixin.get_feature_extractor_dict(model)
    except OSError:
        return False
    return str(config.get("processor_class") or "").endswith("WithLM")


def load_processor(model: str) -> Any:
    """The model's processor; for one that ships an n-gram LM, a ``Wav2Vec2Processor`` with the LM decoder as its
    ``decoder`` (transformers 5.x's ``Wav2Vec2ProcessorWithLM.from_pretrained`` fails; pipeline() loads it the same
    way)."""
    from transformers import AutoProcessor, Wav2Vec2Processor

    if not ships_lm(model):
        return AutoProcessor.from_pretrained(model)
    require_decoder()
    from pyctcdecode import BeamSearchDecoderCTC

    processor = Wav2Vec2Processor.from_pretrained(model)
    if Path(model).is_dir():
        processor.decoder = BeamSearchDecoderCTC.load_from_dir(model)
    else:
        processor.decoder = BeamSearchDecoderCTC.load_from_hf_hub(model)
    return processor
