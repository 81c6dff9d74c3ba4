"""Data: audio decoding, local and Hub datasets, split loading and checks, streaming and shards, text and vocab,
Whisper packing, duration-bucket sampling and padding collators."""
