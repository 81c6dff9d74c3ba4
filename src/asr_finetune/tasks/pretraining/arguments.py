"""The pretraining script's flags (those of transformers' run_wav2vec2_pretraining_no_trainer.py, plus ours),
and the :class:`~asr_finetune.tasks.task.Task` they make."""

from __future__ import annotations

from dataclasses import dataclass, field

from asr_finetune.data.arguments import AudioSourceArguments
from asr_finetune.data.sampling import BatchingArguments
from asr_finetune.errors import UsageError
from asr_finetune.models.loading import require_model_or_config
from asr_finetune.tasks.task import Task

# ---------------------------------------------------------------------------------------------- arguments


@dataclass(kw_only=True)
class PretrainingArguments(AudioSourceArguments):
    """Flags of run_wav2vec2_pretraining_no_trainer.py: the reference script's, plus resume/precision/report extras.

    Shares the data flags of :class:`asr_finetune.data.arguments.AudioSourceArguments`; only the duration limits default
    differently (the reference script's 3-5 s crops)."""

    _argument_group_name = "Pretraining (data, model, optimisation)"

    output_dir: str = field(metadata={"help": "Where checkpoints and the pretrained model (+ feature extractor) go."})
    dataset_config_names: list[str] | None = field(
        default=None,
        metadata={"help": "Hub configs, one per --dataset_split_names entry (ignored for a local dataset)."},
    )
    dataset_split_names: list[str] = field(
        default_factory=lambda: ["train"],
        metadata={"help": "Splits (expressions such as 'train+validation', 'train[:90%%]'), concatenated."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    validation_split_percentage: int = field(
        default=1, metadata={"help": "Hold out this %% of the training rows (at least one) for a validation pass."}
    )
    train_cache_file_name: str | None = field(
        default=None, metadata={"help": "Accepted for compatibility; nothing decoded is cached."}
    )
    validation_cache_file_name: str | None = field(
        default=None, metadata={"help": "Accepted for compatibility; nothing decoded is cached."}
    )
    logging_steps: int = field(default=500, metadata={"help": "Log training figures every N optimizer steps."})
    saving_steps: int = field(default=500, metadata={"help": "Write a resumable checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep only the newest N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Default: resume from the newest complete checkpoint in output_dir. 'false': start fresh."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Model dir or Hub id whose config and feature extractor are used; weights start random."},
    )
    config_name: str | None = field(default=None, metadata={"help": "Config to use instead of the model's."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Validation batch size per process."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases, norms, codebook)."})
    num_train_epochs: int = field(default=3, metadata={"help": "Epochs, unless --max_train_steps is set."})
    max_train_steps: int | None = field(default=None, metadata={"help": "Optimizer steps; overrides the epochs."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip the gradient norm (default: no clip)."})
    lr_scheduler_type: str = field(
        default="linear",
        metadata={"help": "Learning-rate schedule.", "choices": ["linear", "cosine", "cosine_with_restarts",
                                                                  "polynomial", "constant", "constant_with_warmup"]},
    )
    num_warmup_steps: int = field(default=0, metadata={"help": "Warm-up steps of the learning-rate schedule."})
    seed: int = field(default=0, metadata={"help": "Seed for weights, data order, masks and negatives."})
    max_gumbel_temperature: float = field(default=2.0, metadata={"help": "Gumbel-softmax temperature at step 0."})
    min_gumbel_temperature: float = field(default=0.5, metadata={"help": "Floor of the Gumbel temperature."})
    gumbel_temperature_decay: float = field(default=0.999995, metadata={"help": "Temperature factor per step."})
    max_duration_in_seconds: float = field(default=5.0, metadata={"help": "Drop longer clips (counted)."})
    min_duration_in_seconds: float = field(default=3.0, metadata={"help": "Drop shorter clips (counted)."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad input lengths to a multiple."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    mask_time_prob: float | None = field(
        default=None, metadata={"help": "Share of frames that start a masked span (default: the config's)."}
    )
    mask_time_length: int | None = field(default=None, metadata={"help": "Frames per masked span (config's)."})
    mixed_precision: str | None = field(
        default=None,
        metadata={"help": "no, fp16 or bf16 (default: what `accelerate launch` / its config says).",
                  "choices": ["no", "fp16", "bf16"]},
    )
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when an accelerator is present."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Processes decoding training audio."})
    report_to: list[str] | None = field(
        default=None, metadata={"help": "Trackers: tensorboard, wandb, all (when installed). Default: none."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final model to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (datasets, models, upload)."})

    def __post_init__(self) -> None:
        require_model_or_config(self.model_name_or_path, self.config_name)
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise UsageError(f"--max_train_steps {self.max_train_steps}: give a positive number of steps.")
        configs = self.dataset_config_names or [None]
        if len(configs) == 1:
            configs = configs * len(self.dataset_split_names)
        if len(configs) != len(self.dataset_split_names):
            raise UsageError(
                f"--dataset_config_names has {len(configs)} entries and --dataset_split_names "
                f"{len(self.dataset_split_names)}: give one config per split (or a single config for all)."
            )
        self.dataset_config_names = configs
        if not 0 <= self.validation_split_percentage < 100:
            raise UsageError("--validation_split_percentage must be in 0..99.")
        if self.min_gumbel_temperature > self.max_gumbel_temperature:
            raise UsageError("--min_gumbel_temperature is above --max_gumbel_temperature.")
        if self.gradient_accumulation_steps < 1 or self.logging_steps < 1 or self.saving_steps < 1:
            raise UsageError("--gradient_accumulation_steps, --logging_steps and --saving_steps must be >= 1.")


PRETRAINING = Task(
    name="pretraining",
    script="run_wav2vec2_pretraining_no_trainer.py",
    command="asr-pretrain-wav2vec2",
    arguments=(PretrainingArguments, BatchingArguments),
    trainer=None,
)
