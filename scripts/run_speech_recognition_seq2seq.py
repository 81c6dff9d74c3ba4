#!/usr/bin/env python
"""Fine-tune a sequence-to-sequence speech recognition model: Whisper, or a warm-started encoder-decoder
(wav2vec2 + BART made by scripts/create_speech_encoder_decoder.py).

Accepts the command lines of transformers' run_speech_recognition_seq2seq.py; see README.md.
"""

from __future__ import annotations

import logging
import sys

from transformers import set_seed

from asr_finetune import joint_ctc, seq2seq
from asr_finetune.args import BatchingArguments, Seq2SeqDataArguments, Seq2SeqModelArguments, parse_args
from asr_finetune.backends import adapt_training_arguments, select_backend
from asr_finetune.batching import Seq2SeqCollator
from asr_finetune.features import SpeechDataset
from asr_finetune.launch import prepare_launch_environment
from asr_finetune.logs import setup_logging
from asr_finetune.metrics import choose_eval_normalizer
from asr_finetune.modeling import hub_kwargs, load_feature_extractor, weights_dtype
from asr_finetune.outputs import write_model_card
from asr_finetune.run import (
    evaluate_and_report,
    evaluation_requested,
    load_splits,
    log_splits,
    prepare_run,
    require_rows,
    run_cli,
    train_and_save,
    write_data_report,
)
from asr_finetune.run_lock import releases_output_dir
from asr_finetune.text import TextNormalizer, resolve_text_language

logger = logging.getLogger("run_speech_recognition_seq2seq")


@releases_output_dir
def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments and environment
    setup_logging()
    prepare_launch_environment()
    argv = sys.argv[1:] if argv is None else argv
    backend = select_backend(argv, seq2seq=True)
    model_args, data_args, batching_args, training_args = parse_args(
        (Seq2SeqModelArguments, Seq2SeqDataArguments, BatchingArguments, backend.arguments_class), argv
    )
    setup_logging(training_args)
    adapt_training_arguments(training_args)
    run_eval = evaluation_requested(training_args)
    dtype = weights_dtype(model_args.torch_dtype, training_args.do_train)
    if run_eval and not training_args.predict_with_generate:
        logger.warning("WER/CER need generated text: evaluating with --predict_with_generate.")
        training_args.predict_with_generate = True
    resume = prepare_run(training_args)
    pretrained = hub_kwargs(
        model_args.cache_dir, model_args.model_revision, data_args.token, data_args.trust_remote_code
    )
    model_name = model_args.model_name_or_path or model_args.config_name

    # 2. Processor: the encoder's feature extractor and the decoder's tokenizer
    feature_extractor = load_feature_extractor(model_args.feature_extractor_name or model_name, **pretrained)
    tokenizer = seq2seq.load_tokenizer(
        model_args.tokenizer_name or model_name, use_fast=model_args.use_fast_tokenizer, **pretrained
    )
    language = resolve_text_language(
        data_args.text_language,
        ("--language", data_args.language),
        ("--dataset_config_name", data_args.dataset_config_name),
    )
    normalizer = TextNormalizer(case="lower" if data_args.do_lower_case else "keep", language=language)

    # 3. Model: SpecAugment, frozen parts, joint CTC head, Whisper language/task prefix shared by labels and generation
    set_seed(training_args.seed)
    model = seq2seq.load_seq2seq_model(
        model_args.model_name_or_path,
        model_args.config_name,
        apply_spec_augment=model_args.apply_spec_augment,
        dtype=dtype,
        **pretrained,
    )
    seq2seq.freeze(model, feature_encoder=model_args.freeze_feature_encoder, encoder=model_args.freeze_encoder)
    if model_args.ctc_weight:
        joint_ctc.attach_ctc_head(model, model_args.ctc_weight, tokenizer.all_special_ids, seed=training_args.seed)
    language = seq2seq.set_language_and_task(model, tokenizer, data_args.language, data_args.task, model_name)
    seq2seq.complete_generation_config(model, tokenizer)

    # 4. Data: load, check, normalise text, filter by duration (headers only; evaluation keeps long recordings);
    #    labels the decoder can take
    splits, drops = load_splits(data_args, training_args, normalizer.batch, model_args.cache_dir, run_eval)
    unknown = {}
    for name, split in splits.items():
        if name == "train":  # evaluation decodes longer clips with long-form generation
            split = seq2seq.drop_longer_than_window(split, feature_extractor, drops[name])
        long_form = seq2seq.input_window_seconds(feature_extractor) if name == "eval" else None
        split = seq2seq.add_labels(split, tokenizer, model, drops[name], long_form_after=long_form)
        if name == "train":
            split = seq2seq.drop_too_short_for_masking(split, model, feature_extractor.sampling_rate, drops[name])
        unknown[name] = seq2seq.unrepresentable_characters(split["text"], split["labels"], tokenizer)
        if unknown[name]:
            logger.warning("%s text has characters the tokenizer cannot represent: %s", name, dict(unknown[name]))
        splits[name] = split
    log_splits(splits, drops)
    require_rows(splits, drops)
    processor = seq2seq.make_processor(feature_extractor, tokenizer)
    if training_args.process_index == 0:
        seq2seq.save_processor(training_args.output_dir, processor, feature_extractor, tokenizer)
    tokenizer_source = f"tokenizer of {model_args.tokenizer_name or model_name}"
    write_data_report(training_args, splits, drops, unknown, tokenizer_source)
    if data_args.preprocessing_only:
        logger.info("--preprocessing_only: data checked (see data_report.json). Stopping.")
        return {}

    # 5. Train
    datasets_ = {
        name: SpeechDataset(split, feature_extractor, data_args.audio_column_name, data_args.on_bad_row)
        for name, split in splits.items()
    }
    references = splits["eval"]["text"] if "eval" in splits else []
    eval_normalizer = choose_eval_normalizer(
        data_args.eval_normalizer,
        default="english" if seq2seq.is_english(model, language) else "basic",
        english_spelling=getattr(tokenizer, "english_spelling_normalizer", None),
    )
    metrics = seq2seq.Seq2SeqMetrics(tokenizer, references, data_args.eval_metrics, normalizer, eval_normalizer)
    collator = Seq2SeqCollator(
        feature_extractor,
        decoder_start_token_id=seq2seq.decoder_start_token_id(model),
        input_seconds=seq2seq.input_window_seconds(feature_extractor),
    )
    trainer = backend.trainer_class(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=datasets_.get("train"),
        eval_dataset=datasets_.get("eval"),
        processing_class=processor,
        compute_metrics=metrics,
        batching=batching_args,
        on_nonfinite_loss=data_args.on_nonfinite_loss,
    )
    results = {}
    if training_args.do_train:
        results.update(train_and_save(trainer, resume))

    # 6. Evaluate with generate, one line per utterance in eval_predictions.jsonl
    if training_args.do_eval:
        results.update(evaluate_and_report(trainer, datasets_["eval"], metrics, references))

    # 7. Model card
    if training_args.process_index == 0:
        write_model_card(
            training_args.output_dir,
            title=f"Speech seq2seq fine-tuned {model_name}",
            details={
                "base model": model_args.model_name_or_path or f"from scratch ({model_args.config_name})",
                "architecture": model.config.model_type,
                "dataset": data_args.dataset_name,
                "train split": data_args.train_split_name,
                "eval split": data_args.eval_split_name,
                "language / task": f"{language or 'not set'} / {data_args.task}",
                "tokenizer": f"{len(tokenizer)} tokens, {tokenizer_source}",
            },
            metrics={k: v for k, v in results.items() if k.startswith("eval_")},
            argv=argv,
            script=__file__,
        )
    return results


if __name__ == "__main__":
    run_cli(main)
