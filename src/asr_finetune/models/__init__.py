"""Models: loading (dtype, Hub arguments), the fast CPU feature encoder, seq2seq models and Whisper's prefix,
warm-starting an encoder-decoder, the joint CTC head."""
