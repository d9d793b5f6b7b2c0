"""Training machinery shared by the stages: distributed, checkpoints, optimiser, progress."""
