"""Fine-tune speech recognition models from the command line."""

import logging

__version__ = "0.1.0"

# bitsandbytes (the bnb extra, for 8-bit Adam) looks for a 4-bit matrix kernel on the Hub when transformers imports
# it, and warns on every run where it cannot fetch one; nothing here uses 4-bit weights.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
