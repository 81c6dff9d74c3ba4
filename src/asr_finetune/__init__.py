"""Fine-tune speech recognition models from the command line."""

__version__ = "0.1.0"
