"""bench: measure training step time across batch sizes and turn it into time to accuracy."""

__version__ = "0.1.0"
