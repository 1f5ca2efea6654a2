"""Training: one step, the trainer, optimizers and clipping, checkpoints, the run lock."""
