"""What differs per task (CTC, seq2seq, wav2vec2 pretraining): arguments, tokenizer/vocab, model preparation,
labels, collators and metrics, each task described by a :class:`~asr_finetune.tasks.task.Task`; and the steps both
fine-tuning tasks share (:mod:`~asr_finetune.tasks.finetuning`)."""
