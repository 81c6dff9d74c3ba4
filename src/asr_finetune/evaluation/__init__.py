"""Scoring and decoding: WER/CER and their normalisers, ``evaluate`` modules, long recordings, transcription."""
