"""Tooling that is not training: the synthetic corpus, tiny models, the CTranslate2 Whisper converter,
benchmark helpers, recipes and the seed commands they cite. The training library never imports it."""
