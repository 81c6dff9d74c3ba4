"""optimum-habana's Trainer classes with what our stock Trainer classes add (sampling, evaluation, joint CTC).

Imported only for ``--use_habana``: importing optimum.habana needs Habana's SynapseAI software. The mixins are the
ones :mod:`asr_finetune.backends` puts on the stock classes, in the same order.
"""

from __future__ import annotations

from optimum.habana import GaudiSeq2SeqTrainer, GaudiTrainer

from .backends import SpeechSamplingMixin
from .ctc import CTCEvalMixin
from .joint_ctc import JointCTCMixin
from .seq2seq import Seq2SeqEvalMixin


class SpeechGaudiTrainer(CTCEvalMixin, SpeechSamplingMixin, GaudiTrainer):
    """GaudiTrainer for CTC models."""


class SpeechGaudiSeq2SeqTrainer(Seq2SeqEvalMixin, JointCTCMixin, SpeechSamplingMixin, GaudiSeq2SeqTrainer):
    """GaudiSeq2SeqTrainer for encoder-decoder models."""
