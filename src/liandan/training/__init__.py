"""Training: the loop, checkpoints, run directory, metrics and the public train/resume API."""
