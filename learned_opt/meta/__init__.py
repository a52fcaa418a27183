"""Meta-training: unrolled inner training, gradient estimators, the trainer, checkpoints."""
