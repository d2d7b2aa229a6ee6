#!/usr/bin/env bash
# Set-up behind `make setup`: torch, detectron2 and pasa_det (editable, with test extras)
# into the environment of the given Python (default: .venv/bin/python; a venv given by a
# relative path such as .venv-detectron2-main/bin/python is created if missing).
# An importable torch is kept, and so is an importable detectron2 unless DETECTRON2_SOURCE
# names where to build it from (dev/build_detectron2.py); safe and fast to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}

fail() { echo "setup failed: $*" >&2; exit 1; }
pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }

case "$PY" in
  /*) ;;
  */bin/python)
    if [ ! -x "$PY" ]; then
      venv=${PY%/bin/python}
      echo "== creating $venv"
      python3 -m venv "$venv" || fail "could not create $venv with python3 -m venv (on Debian: apt-get install python3-venv)"
    fi ;;
esac
"$PY" -c "import sys; assert sys.version_info >= (3, 8)" 2>/dev/null \
  || fail "PYTHON=$PY is not a runnable Python >= 3.8"

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  echo "== installing torch 2.14.1 and torchvision 0.29.1"
  pip_install torch==2.14.1 torchvision==0.29.1 \
    || fail "could not install torch; install torch and torchvision into $PY's environment yourself and rerun"
fi

if [ -n "${DETECTRON2_SOURCE:-}" ] || ! "$PY" -c "import detectron2" 2>/dev/null; then
  "$PY" dev/build_detectron2.py
fi

# detectron2 0.6 from PyPI keeps its pins through later installs.
pins=()
if "$PY" -c "import importlib.metadata as m; m.distribution('pb1-detectron2')" 2>/dev/null; then
  pins=("numpy<1.24" "Pillow<10" "setuptools<81")
fi
# pip builds pasa_det._C (PASA's C++ kernel) against this torch: no build isolation, and
# PEP 517 so that pip does not hand the editable install to a build-isolated `setup.py develop`.
# The compile takes about half a minute, so an install whose kernel is newer than its
# sources is kept.
if "$PY" - 2>/dev/null <<'EOF'
import pathlib, hypothesis, cityscapesscripts, ruff, onnx, onnxruntime, onnxscript, pasa_det, pasa_det._C
here = pathlib.Path("pasa_det").resolve()
assert pathlib.Path(pasa_det.__file__).resolve().parent == here
sources = [pathlib.Path("setup.py"), *pathlib.Path("pasa_det/layers/csrc").iterdir()]
built = pathlib.Path(pasa_det._C.__file__).stat().st_mtime
assert all(built > p.stat().st_mtime for p in sources)
EOF
then
  echo "== pasa_det is installed here with an up-to-date C++ kernel"
else
  echo "== installing pasa_det (editable, compiling its C++ kernel) with its test extras"
  pip_install -q --no-build-isolation --use-pep517 -e ".[test]" "${pins[@]}" || fail "pip could not install pasa_det"
fi
summary=$("$PY" -W ignore -c 'import sys, torch, detectron2, pasa_det.layers.pasa as p; print(sys.prefix, "torch", torch.__version__, "detectron2", detectron2.__version__, "C++ kernel", "built" if p.native_available() else "not built")') \
  || fail "pasa_det does not import after set-up (see the error above)"
echo "== set-up done: $summary"
