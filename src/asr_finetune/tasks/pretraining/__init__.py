"""wav2vec2 self-supervised pretraining: arguments, config checks and model, unlabeled data, masks and negatives,
health checks, and the Accelerate loop with its own checkpoints and log."""
