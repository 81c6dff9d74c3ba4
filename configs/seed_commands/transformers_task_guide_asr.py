# transformers docs, tasks/asr ("Automatic speech recognition"), the version with evaluation_strategy and
# group_by_length=True (transformers 4.3x); the lines that set data, model and training arguments, as printed
>>> minds = load_dataset("PolyAI/minds14", name="en-US", split="train[:100]")
>>> minds = minds.train_test_split(test_size=0.2)
>>> processor = AutoProcessor.from_pretrained("facebook/wav2vec2-base")
>>> model = AutoModelForCTC.from_pretrained(
...     "facebook/wav2vec2-base",
...     ctc_loss_reduction="mean",
...     pad_token_id=processor.tokenizer.pad_token_id,
... )
>>> training_args = TrainingArguments(
...     output_dir="my_awesome_asr_mind_model",
...     per_device_train_batch_size=8,
...     gradient_accumulation_steps=2,
...     learning_rate=1e-5,
...     warmup_steps=500,
...     max_steps=2000,
...     gradient_checkpointing=True,
...     fp16=True,
...     group_by_length=True,
...     evaluation_strategy="steps",
...     per_device_eval_batch_size=8,
...     save_steps=1000,
...     eval_steps=1000,
...     logging_steps=25,
...     load_best_model_at_end=True,
...     metric_for_best_model="wer",
...     greater_is_better=False,
...     push_to_hub=True,
... )
