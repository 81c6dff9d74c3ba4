"""The commands: one ``main`` per task (a table of contents of its steps), ``run_cli`` (one-line errors, exit 2),
the console entry points and ``asr-transcribe``. ``scripts/*.py`` are shims over these."""
