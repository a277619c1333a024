"""Building blocks any program may use: configuration, distributed setup, errors, logging, the checkpoint format, losses, metrics, solver."""
