"""``asr-pretrain-wav2vec2`` / ``scripts/run_wav2vec2_pretraining_no_trainer.py``: pretrain a wav2vec2 model on
unlabeled audio (contrastive + diversity loss) with Accelerate, with the command lines of transformers'
run_wav2vec2_pretraining_no_trainer.py. Start it with ``python``, ``accelerate launch`` or ``torchrun``; a rerun resumes
from the last complete checkpoint; the output dir is a ``--model_name_or_path`` for CTC fine-tuning."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from accelerate.utils import set_seed

from asr_finetune.args import parse_args
from asr_finetune.cli.run import run_cli
from asr_finetune.data.speech_dataset import SpeechDataset
from asr_finetune.logs import setup_logging
from asr_finetune.models.loading import hub_kwargs
from asr_finetune.tasks.pretraining.arguments import PRETRAINING
from asr_finetune.tasks.pretraining.data import PretrainingCollator, load_splits
from asr_finetune.tasks.pretraining.loop import Pretrainer, make_accelerator
from asr_finetune.tasks.pretraining.model import load_config_and_features, new_pretraining_model
from asr_finetune.training.checkpoints import resume_point
from asr_finetune.training.launch import keeps_environment
from asr_finetune.training.outputs import check_hub_access, disk_errors, push_to_hub
from asr_finetune.training.run_lock import lock_output_dir, releases_output_dir

logger = logging.getLogger("run_wav2vec2_pretraining_no_trainer")


@keeps_environment
@releases_output_dir
def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments
    setup_logging()
    args, batching = parse_args(PRETRAINING.arguments, argv)
    pretrained = hub_kwargs(args.cache_dir, None, args.hub_token, args.trust_remote_code)

    # 2. Config and feature extractor, checked before any data is read (the weights always start random)
    config, feature_extractor = load_config_and_features(args, **pretrained)

    # 3. Processes: one, or all of a torchrun / accelerate launch, CPU included
    accelerator = make_accelerator(args, find_unused_parameters=config.layerdrop > 0)
    logger.info("Process %d of %d on %s (%s).", accelerator.process_index, accelerator.num_processes,
                accelerator.device, accelerator.distributed_type)
    setup_logging(SimpleNamespace(should_log=accelerator.is_main_process))
    lock_output_dir(args.output_dir, accelerator.is_main_process)
    check_hub_access(args)

    # 4. Data: every (config, split) pair, files checked, filtered by duration from headers, validation held out
    with accelerator.main_process_first():
        splits = load_splits(args, config, feature_extractor.sampling_rate, accelerator.is_main_process)
    if args.preprocessing_only:
        logger.info("--preprocessing_only: data checked (%s/data_report.json). Stopping.", args.output_dir)
        return {}

    # 5. Model from the config with random weights; batches carry masks and negatives drawn per utterance
    set_seed(args.seed)
    model = new_pretraining_model(config, args.gradient_checkpointing)
    set_seed(args.seed, device_specific=True)  # each process draws its own masks, negatives and Gumbel noise
    collator = PretrainingCollator(feature_extractor, config, pad_to_multiple_of=args.pad_to_multiple_of)
    datasets_ = {name: SpeechDataset(rows, feature_extractor, args.audio_column_name, args.on_bad_row)
                 for name, rows in splits.items()}

    # 6. Train, resuming from the newest complete checkpoint in output_dir; save model + feature extractor
    resume = resume_point(args.output_dir, args.resume_from_checkpoint, accelerator.is_main_process)
    pretrainer = Pretrainer(args, accelerator, model, feature_extractor, collator, datasets_["train"],
                            datasets_.get("validation"), batching=batching)
    with disk_errors(args.output_dir):
        results = pretrainer.train(resume)

    # 7. Upload
    if args.push_to_hub and accelerator.is_main_process:
        push_to_hub(args.output_dir, args.hub_model_id, args.hub_token)
    return results


if __name__ == "__main__":
    run_cli(main)
