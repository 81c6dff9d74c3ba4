"""``asr-finetune-ctc`` / ``scripts/run_speech_recognition_ctc.py``: fine-tune a CTC model (wav2vec2, HuBERT, XLS-R,
WavLM, ...) with the command lines of transformers' run_speech_recognition_ctc.py."""

from __future__ import annotations

import logging

from asr_finetune.cli.run import run_cli
from asr_finetune.data.collators import CTCCollator
from asr_finetune.data.vocab import VOCAB_FILE
from asr_finetune.evaluation.lm_decoding import LanguageModelArguments
from asr_finetune.models.loading import load_feature_extractor
from asr_finetune.tasks import ctc, ctc_lm, finetuning
from asr_finetune.tasks.ctc import CTC
from asr_finetune.training.launch import keeps_environment
from asr_finetune.training.run_lock import releases_output_dir

logger = logging.getLogger("run_speech_recognition_ctc")


@keeps_environment
@releases_output_dir
def main(argv: list[str] | None = None, streaming: bool = False) -> dict:
    # 1. Arguments (read once), launch environment, start-up checks, the checkpoint to resume from
    run = finetuning.start(CTC, argv, streaming)
    model_args, data_args, training_args = run.model_args, run.data_args, run.training_args
    lm_args = run.group(LanguageModelArguments)

    # 2. Feature extractor, and the tokenizer if one is brought along (else built from data in step 4)
    feature_extractor = load_feature_extractor(model_args.model_name_or_path or model_args.config_name,
                                               **run.pretrained)
    tokenizer, vocab_source = ctc.existing_tokenizer(model_args, data_args, training_args.output_dir, run.resume,
                                                     run.pretrained)
    normalizer = ctc.text_normalizer(tokenizer, data_args)

    # 3. Data: load, check columns and files, normalise text, filter by duration (headers only, no decoding)
    splits, drops = finetuning.load_splits(run, normalizer.batch)

    # 4. Tokenizer built from the training text when none was brought; characters its vocab lacks
    tokenizer, vocab_source, unknown = ctc.ensure_tokenizer(tokenizer, vocab_source, splits, data_args, training_args)

    # 5. Model with a head that matches the tokenizer; labels that CTC can fit; processor and data report
    model = ctc.prepare_model(run, tokenizer)
    splits = ctc.label_splits(splits, drops, tokenizer, model, feature_extractor.sampling_rate, model_args)
    processor = ctc.save_processor(feature_extractor, tokenizer, training_args.output_dir, run.is_main_process,
                                   resuming=run.resume is not None)
    finetuning.finish_data(run, splits, drops, unknown, vocab_source)
    if "train" in splits and lm_args.lm_order:  # the n-gram of --lm_order, from the training text as normalised
        ctc_lm.build_lm_if_asked(lm_args, splits["train"]["text"], training_args.output_dir, run.is_main_process)
    if data_args.preprocessing_only:
        logger.info("--preprocessing_only: data checked, vocab in %s/%s. Stopping.", training_args.output_dir,
                    VOCAB_FILE)
        return {}

    # 6. Trainer over datasets that decode audio on the fly; evaluation decodes only each clip's own frames
    metrics = ctc.make_metrics(tokenizer, splits, data_args)
    trainer = finetuning.build_trainer(run, model, splits, feature_extractor, processor,
                                       CTCCollator(feature_extractor), metrics,
                                       preprocess_logits_for_metrics=ctc.argmax_logits)

    # 7. Train (or report a finished run), evaluate with eval_predictions.jsonl (and with the n-gram LM), model card
    return finetuning.train_evaluate_and_report(
        run, trainer, metrics, card_title=f"CTC fine-tuned {model_args.model_name_or_path or model_args.config_name}",
        card_details={"vocab": f"{len(tokenizer)} tokens, {vocab_source}"}, script=CTC.script,
        after_evaluation=lambda evaluated: ctc_lm.decode_with_lm(lm_args, trainer, metrics, tokenizer,
                                                                 feature_extractor, evaluated),
    )


if __name__ == "__main__":
    run_cli(main)
