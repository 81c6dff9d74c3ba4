#!/usr/bin/env bash
# Installs what asr-finetune needs on a fresh Debian/Ubuntu machine: system tools, then the package.
# torch is pinned first: a bare `torch` requirement would pull the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

# ffmpeg: transformers' pipeline("automatic-speech-recognition") reads (and resamples) audio files through it.
# time: /usr/bin/time -v gives the benchmarks each run's peak memory.
# libtcmalloc-minimal4: the training scripts run on tcmalloc where it is installed (src/asr_finetune/allocator.py).
if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null || ! command -v mpirun >/dev/null \
   || ! command -v ffmpeg >/dev/null || ! dpkg -s libsox-fmt-mp3 >/dev/null 2>&1 || [ ! -x /usr/bin/time ] \
   || ! dpkg -s libtcmalloc-minimal4 >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng sox libsox-fmt-mp3 openmpi-bin ffmpeg time \
    libtcmalloc-minimal4 >/dev/null
fi
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
python -m pip install -q -e ".[test,phonemes,tensorboard,evaluate,export,peft,bnb]"
