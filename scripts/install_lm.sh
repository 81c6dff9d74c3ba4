#!/usr/bin/env bash
# The n-gram LM extra for CTC decoding: the kenlm Python module (pip install '.[lm]') and pyctcdecode, plus KenLM's
# own lmplz and build_binary, built from the kenlm source distribution on PyPI (it carries the builder's sources)
# into this Python environment's bin/. Run after scripts/install.sh; rerunning skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
KENLM_VERSION="${KENLM_VERSION:-0.3.0}"
PACKAGES="cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
  zlib1g-dev libbz2-dev liblzma-dev"
missing=""
for package in $PACKAGES; do dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
python -m pip install -q -e ".[lm]"
# pyctcdecode 0.5 pins numpy<2, which would downgrade numpy under torch and datasets; it runs on numpy 2 (the tests
# decode with it), so it is installed without its pins. pygtrie, its one run-time need, comes with the extra.
python -m pip install -q --no-deps "pyctcdecode==${PYCTCDECODE_VERSION:-0.5.0}"
BIN="$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
if [ ! -x "$BIN/lmplz" ] || [ ! -x "$BIN/build_binary" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  python -m pip download -q --no-deps --no-binary kenlm "kenlm==$KENLM_VERSION" -d "$work"
  tar xzf "$work/kenlm-$KENLM_VERSION.tar.gz" -C "$work"
  # KenLM's own build (its compiler warnings go to a log, shown only if the build fails)
  if ! { cmake -S "$work/kenlm-$KENLM_VERSION" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
         && cmake --build "$work/build" --target lmplz build_binary -j "$(nproc)"; } >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log"; echo "Building KenLM's lmplz failed (log above)." >&2; exit 1
  fi
  install -m 755 "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$BIN/"
fi
echo "n-gram LM extra ready: $BIN/lmplz, $BIN/build_binary, pyctcdecode $(python -c 'import pyctcdecode, kenlm; print(pyctcdecode.__version__ if hasattr(pyctcdecode, "__version__") else "")')"
