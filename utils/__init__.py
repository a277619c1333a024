"""Training utilities: configuration, distributed setup, losses, solver, metrics, checkpoints, logging."""
