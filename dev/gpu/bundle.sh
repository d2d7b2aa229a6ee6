#!/usr/bin/env bash
# Builds .gpu-bundle/ for a lent GPU machine (Python 3.12, torch, triton, no detectron2,
# no network): detectron2 0.6's Python sources and their pure-Python dependencies from this
# .venv, a stub detectron2._C, shims for NumPy 2 / Pillow >= 10, and a pycocotools wheel.
# Not part of pasa_det; run here, then pass `carry: [".gpu-bundle"]` with dev/gpu/check.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf .gpu-bundle && mkdir -p .gpu-bundle/site .gpu-bundle/whl
for p in detectron2 fvcore iopath yacs termcolor omegaconf antlr4 hydra tabulate; do cp -r "$site/$p" .gpu-bundle/site/; done
find .gpu-bundle/site \( -name __pycache__ -o -name "*.so" \) -prune -exec rm -rf {} +
cat > .gpu-bundle/site/detectron2/_C.py <<'PY'
# No native ops (as the PyPI build); what detectron2's collect_env asks for.
def get_compiler_version(): return "none"
def get_cuda_version(): return "not built with CUDA ops"
def has_cuda(): return False
PY
cat > .gpu-bundle/site/sitecustomize.py <<'PY'
# detectron2 0.6 on NumPy 2 and Pillow >= 10: the aliases it still uses.
import numpy, PIL.Image
for _name, _value in (("int", int), ("float", float), ("bool", bool)):
    if _name not in numpy.__dict__:
        setattr(numpy, _name, _value)
if not hasattr(PIL.Image, "LINEAR"):
    PIL.Image.LINEAR = PIL.Image.BILINEAR
PY
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu-bundle/whl pycocotools==2.0.11
du -sh .gpu-bundle
