#!/usr/bin/env python
"""Build and install detectron2 0.6 from PyPI's `pb1-detectron2` sdist, without native ops.

The sdist holds detectron2 v0.6's Python sources but not `detectron2/layers/csrc`, so
it cannot build as shipped; an empty `_C` extension makes it build. Without native ops
there is no deformable conv, no rotated boxes and no fast COCOeval, none of which
pasa_det needs. detectron2 0.6 also needs Pillow < 10, setuptools < 81 (pkg_resources)
and NumPy < 1.24 (np.bool etc.): those pins are installed with it.

Run by `make setup` only when `import detectron2` fails.
"""
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

SDIST = "pb1-detectron2-0.6.tar.gz"
SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
PINS = ["numpy<1.24", "Pillow<10", "setuptools<81", "wheel"]
EMPTY_EXTENSION = """\
// pasa_det: a detectron2._C without native ops, so the PyPI sdist builds. It keeps the
// two functions detectron2's collect_env_info() (called by default_setup) asks for.
#include <Python.h>
static PyObject* compiler_version(PyObject*, PyObject*) { return PyUnicode_FromString("GCC " __VERSION__); }
static PyObject* cuda_version(PyObject*, PyObject*) { return PyUnicode_FromString("not built with CUDA ops"); }
static PyMethodDef d2_methods[] = {
    {"get_compiler_version", compiler_version, METH_NOARGS, nullptr},
    {"get_cuda_version", cuda_version, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr}};
static struct PyModuleDef d2_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, d2_methods};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&d2_module); }
"""

def fail(message: str) -> None:
    sys.exit(f"setup failed: {message}")


def download(workdir: str) -> str:
    # pip cannot fetch this sdist itself: its metadata declares a direct-URL extra
    # ("panopticapi @ https://…"), which pip rejects for any package from PyPI.
    index_url = f"{INDEX}/pb1-detectron2/"
    try:
        page = urllib.request.urlopen(index_url, timeout=120).read().decode()
        match = re.search(r'href="([^"]*%s[^"]*)"' % re.escape(SDIST), page)
        if not match:
            fail(f"{index_url} lists no {SDIST}")
        url = urllib.parse.urljoin(index_url, match.group(1).split("#")[0])
        data = urllib.request.urlopen(url, timeout=300).read()
    except OSError as e:
        fail(f"could not download {SDIST} from {index_url}: {e}. Check network access to PyPI, "
             "or set PIP_INDEX_URL to a mirror's simple index.")
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        fail(f"{SDIST} from {url} has sha256 {digest}, expected {SHA256}")
    path = os.path.join(workdir, SDIST)
    with open(path, "wb") as f:
        f.write(data)
    return path


def pip_install(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    if subprocess.call(cmd) != 0:
        fail(f"`{' '.join(cmd)}` failed (see pip's output above)")


def main() -> None:
    try:
        import torch  # noqa: F401  (setup.py imports it: built without isolation)
    except ImportError:
        fail("torch must be installed before detectron2")
    with tempfile.TemporaryDirectory(prefix="detectron2-build-") as workdir:
        print(f"== downloading {SDIST}", flush=True)
        with tarfile.open(download(workdir)) as tar:
            tar.extractall(workdir, filter="data")
        source = os.path.join(workdir, SDIST[: -len(".tar.gz")])
        csrc = os.path.join(source, "detectron2", "layers", "csrc")
        os.makedirs(csrc, exist_ok=True)
        with open(os.path.join(csrc, "vision.cpp"), "w") as f:
            f.write(EMPTY_EXTENSION)
        print("== installing detectron2 0.6 (no native ops) and its pins: " + " ".join(PINS), flush=True)
        pip_install(*PINS)
        pip_install("--no-build-isolation", source, *PINS)


if __name__ == "__main__":
    main()
