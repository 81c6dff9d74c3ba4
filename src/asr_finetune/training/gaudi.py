"""optimum-habana's Trainer classes with what our stock Trainer classes add (sampling, evaluation, joint CTC).

Built only for ``--use_habana``: importing optimum.habana needs Habana's SynapseAI software, so the import happens
when a Gaudi run asks for the classes, not when this module is imported. The mixins are the ones
:mod:`asr_finetune.training.trainers` puts on the stock classes, in the same order.
"""

from __future__ import annotations

import functools

from asr_finetune.models.joint_ctc import JointCTCMixin
from asr_finetune.training.eval_steps import CTCEvalMixin, Seq2SeqEvalMixin
from asr_finetune.training.trainers import SpeechSamplingMixin


@functools.cache
def gaudi_classes(seq2seq: bool) -> tuple[type, type]:
    """(TrainingArguments class, Trainer class) of a Gaudi run; raises what importing optimum.habana raises."""
    from optimum.habana import GaudiSeq2SeqTrainer, GaudiSeq2SeqTrainingArguments, GaudiTrainer, GaudiTrainingArguments

    if seq2seq:

        class SpeechGaudiSeq2SeqTrainer(Seq2SeqEvalMixin, JointCTCMixin, SpeechSamplingMixin, GaudiSeq2SeqTrainer):
            """GaudiSeq2SeqTrainer for encoder-decoder models."""

        return GaudiSeq2SeqTrainingArguments, SpeechGaudiSeq2SeqTrainer

    class SpeechGaudiTrainer(CTCEvalMixin, SpeechSamplingMixin, GaudiTrainer):
        """GaudiTrainer for CTC models."""

    return GaudiTrainingArguments, SpeechGaudiTrainer
