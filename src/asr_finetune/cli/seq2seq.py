"""``asr-finetune-seq2seq`` / ``scripts/run_speech_recognition_seq2seq.py``: fine-tune Whisper or a warm-started
speech encoder-decoder (wav2vec2 + BART) with the command lines of transformers' run_speech_recognition_seq2seq.py."""

from __future__ import annotations

import logging

from asr_finetune.cli.run import run_cli
from asr_finetune.models.loading import load_feature_extractor
from asr_finetune.models.seq2seq import load_tokenizer
from asr_finetune.tasks import finetuning, seq2seq
from asr_finetune.tasks.seq2seq import SEQ2SEQ
from asr_finetune.training.launch import keeps_environment
from asr_finetune.training.run_lock import releases_output_dir

logger = logging.getLogger("run_speech_recognition_seq2seq")


@keeps_environment
@releases_output_dir
def main(argv: list[str] | None = None, streaming: bool = False) -> dict:
    # 1. Arguments (read once), launch environment, start-up checks, the checkpoint to resume from
    run = finetuning.start(SEQ2SEQ, argv, streaming)
    model_args, data_args, training_args = run.model_args, run.data_args, run.training_args
    seq2seq.generate_for_metrics(training_args, run.run_eval)
    model_name = model_args.model_name_or_path or model_args.config_name

    # 2. Processor: the encoder's feature extractor and the decoder's tokenizer; transcript normalisation
    feature_extractor = load_feature_extractor(model_args.feature_extractor_name or model_name, **run.pretrained)
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_name,
                            use_fast=model_args.use_fast_tokenizer, **run.pretrained)
    normalizer = seq2seq.text_normalizer(data_args)

    # 3. Model: SpecAugment, frozen parts, joint CTC head, Whisper language/task prefix shared by labels and generation
    model, language = seq2seq.prepare_model(run, tokenizer, model_name)

    # 4. Data: load, check, normalise, filter (headers only; evaluation keeps long recordings); labels that fit
    splits, drops = finetuning.load_splits(run, normalizer.batch)
    splits, unknown = seq2seq.label_splits(splits, drops, tokenizer, model, feature_extractor)
    processor = seq2seq.publish_processor(feature_extractor, tokenizer, training_args.output_dir,
                                          run.is_main_process, resuming=run.resume is not None)
    tokenizer_source = f"tokenizer of {model_args.tokenizer_name or model_name}"
    finetuning.finish_data(run, splits, drops, unknown, tokenizer_source)
    if data_args.preprocessing_only:
        logger.info("--preprocessing_only: data checked (see data_report.json). Stopping.")
        return {}

    # 5. Trainer over datasets that decode audio on the fly (--pack_utterances: packed windows); evaluation generates
    metrics = seq2seq.make_metrics(tokenizer, splits, data_args, normalizer, model, language)
    splits = seq2seq.pack_for_training(splits, data_args, tokenizer, model, feature_extractor, training_args.seed)
    trainer = finetuning.build_trainer(run, model, splits, feature_extractor, processor,
                                       seq2seq.make_collator(feature_extractor, model), metrics)

    # 6. Train (or report a finished run), evaluate with eval_predictions.jsonl, model card
    return finetuning.train_evaluate_and_report(
        run, trainer, metrics, card_title=f"Speech seq2seq fine-tuned {model_name}",
        card_details={
            "architecture": model.config.model_type,
            "language / task": f"{language or 'not set'} / {data_args.task}",
            "tokenizer": f"{len(tokenizer)} tokens, {tokenizer_source}",
        },
        script=SEQ2SEQ.script,
        card_language=language,
        pipeline_kwargs=seq2seq.pipeline_kwargs(model),
    )


if __name__ == "__main__":
    run_cli(main)
