#!/usr/bin/env python
"""Fine-tune a CTC speech recognition model (wav2vec2, HuBERT, XLS-R, WavLM, ...).

Accepts the command lines of transformers' run_speech_recognition_ctc.py; see README.md.
"""

from __future__ import annotations

import logging
import sys

from transformers import Wav2Vec2Processor, set_seed

from asr_finetune import ctc
from asr_finetune.args import BatchingArguments, CTCDataArguments, CTCModelArguments, parse_args
from asr_finetune.backends import adapt_training_arguments, select_backend
from asr_finetune.batching import CTCCollator
from asr_finetune.errors import DataError
from asr_finetune.features import SpeechDataset
from asr_finetune.launch import prepare_launch_environment
from asr_finetune.logs import setup_logging
from asr_finetune.metrics import choose_eval_normalizer
from asr_finetune.modeling import hub_kwargs, load_ctc_model, load_feature_extractor, use_mean_loss, weights_dtype
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
from asr_finetune.text import resolve_text_language
from asr_finetune.vocab import VOCAB_FILE, format_missing, missing_characters

logger = logging.getLogger("run_speech_recognition_ctc")


@releases_output_dir
def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments and environment
    setup_logging()
    prepare_launch_environment()
    argv = sys.argv[1:] if argv is None else argv
    backend = select_backend(argv)
    model_args, data_args, batching_args, training_args = parse_args(
        (CTCModelArguments, CTCDataArguments, BatchingArguments, backend.arguments_class), argv
    )
    setup_logging(training_args)
    adapt_training_arguments(training_args)
    run_eval = evaluation_requested(training_args)
    dtype = weights_dtype(model_args.torch_dtype, training_args.do_train)
    resume = prepare_run(training_args)
    pretrained = hub_kwargs(
        model_args.cache_dir, model_args.model_revision, data_args.token, data_args.trust_remote_code
    )

    # 2. Feature extractor, and the tokenizer if one is brought along (else built from data in step 4)
    feature_extractor = load_feature_extractor(model_args.model_name_or_path or model_args.config_name, **pretrained)
    tokenizer, vocab_source = ctc.existing_tokenizer(
        model_args, data_args, training_args.output_dir, resume, pretrained
    )
    language = resolve_text_language(
        data_args.text_language,
        ("--dataset_config_name", data_args.dataset_config_name),
        ("--phoneme_language", data_args.phoneme_language),
    )
    normalizer = ctc.normalizer_for(
        tokenizer, data_args.chars_to_ignore, data_args.do_lower_case, data_args.phoneme_language, language
    )

    # 3. Data: load, check columns and files, normalise text, filter by duration (headers only, no decoding)
    splits, drops = load_splits(data_args, training_args, normalizer.batch, model_args.cache_dir, run_eval)

    # 4. Tokenizer built from the training text when none was brought (main process writes, others read)
    if tokenizer is None:
        if "train" not in splits:
            raise DataError("Evaluation alone needs a tokenizer: pass --tokenizer_name_or_path or a fine-tuned model.")
        with training_args.main_process_first(desc="vocab"):
            tokenizer = ctc.build_tokenizer(
                splits["train"]["text"],
                training_args.output_dir,
                unk_token=data_args.unk_token,
                pad_token=data_args.pad_token,
                word_delimiter_token=data_args.word_delimiter_token,
                write=training_args.process_index == 0,
            )
        vocab_source = f"built from {data_args.train_split_name}"
    unknown = {
        name: missing_characters(split["text"], tokenizer.get_vocab(), data_args.word_delimiter_token)
        for name, split in splits.items()
    }
    for name, counts in unknown.items():
        if counts:
            logger.warning(
                "%s text has %d character(s) the vocab lacks (they become %s): %s",
                name,
                sum(counts.values()),
                tokenizer.unk_token,
                format_missing(counts),
            )

    # 5. Model with a head that matches the tokenizer; labels that CTC can fit
    set_seed(training_args.seed)
    model = load_ctc_model(
        model_args.model_name_or_path,
        model_args.config_name,
        model_args.config_overrides(),
        tokenizer,
        dtype=dtype,
        **pretrained,
    )
    use_mean_loss(model)
    if model_args.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    sampling_rate = feature_extractor.sampling_rate
    for name, split in splits.items():
        min_frames = model_args.mask_time_length if name == "train" and model_args.mask_time_prob > 0 else 0
        splits[name] = ctc.add_labels(split, tokenizer, model, sampling_rate, drops[name], min_frames)
    log_splits(splits, drops)
    require_rows(splits, drops)
    processor = Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    if training_args.process_index == 0:
        processor.save_pretrained(training_args.output_dir)
        feature_extractor.save_pretrained(training_args.output_dir)  # preprocessor_config.json, for 4.x readers
    write_data_report(training_args, splits, drops, unknown, vocab_source)
    if data_args.preprocessing_only:
        logger.info(
            "--preprocessing_only: data checked, vocab in %s/%s. Stopping.", training_args.output_dir, VOCAB_FILE
        )
        return {}

    # 6. Train
    datasets_ = {
        name: SpeechDataset(split, feature_extractor, data_args.audio_column_name, data_args.on_bad_row)
        for name, split in splits.items()
    }
    eval_normalizer = choose_eval_normalizer(
        data_args.eval_normalizer, default="none" if data_args.phoneme_language else "basic"
    )
    metrics = ctc.CTCMetrics(
        tokenizer, splits["eval"]["text"] if "eval" in splits else [], data_args.eval_metrics, eval_normalizer
    )
    trainer = backend.trainer_class(
        model=model,
        args=training_args,
        data_collator=CTCCollator(feature_extractor),
        train_dataset=datasets_.get("train"),
        eval_dataset=datasets_.get("eval"),
        processing_class=processor,
        compute_metrics=metrics,
        preprocess_logits_for_metrics=ctc.argmax_logits,
        batching=batching_args,
        on_nonfinite_loss=data_args.on_nonfinite_loss,
    )
    results = {}
    if training_args.do_train:
        results.update(train_and_save(trainer, resume))

    # 7. Evaluate, with one line per utterance in eval_predictions.jsonl
    if training_args.do_eval:
        results.update(evaluate_and_report(trainer, datasets_["eval"], metrics, splits["eval"]["text"]))

    # 8. Model card
    if training_args.process_index == 0:
        write_model_card(
            training_args.output_dir,
            title=f"CTC fine-tuned {model_args.model_name_or_path or model_args.config_name}",
            details={
                "base model": model_args.model_name_or_path or f"from scratch ({model_args.config_name})",
                "dataset": data_args.dataset_name,
                "train split": data_args.train_split_name,
                "eval split": data_args.eval_split_name,
                "vocab": f"{len(tokenizer)} tokens, {vocab_source}",
            },
            metrics={k: v for k, v in results.items() if k.startswith("eval_")},
            argv=argv,
            script=__file__,
        )
    return results


if __name__ == "__main__":
    run_cli(main)
