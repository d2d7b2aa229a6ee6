#!/usr/bin/env python
"""Install detectron2 into this interpreter's environment, from the source a user picks.

DETECTRON2_SOURCE chooses it:

- unset: detectron2's official source (`git+https://github.com/facebookresearch/detectron2.git`,
  current main with its C++ ops) when git can reach it within 5 seconds; otherwise
  detectron2 0.6 from PyPI (below);
- a detectron2 checkout, a source archive (.tar.gz/.zip of one), or any URL pip installs
  (`git+https://…@<commit>`): built with its C++ ops, no pins;
- `pypi`: detectron2 0.6 from PyPI's `pb1-detectron2` sdist. That sdist lacks
  `detectron2/layers/csrc`, so it cannot build as shipped; an empty `_C` extension makes it
  build, without native ops (no deformable conv, rotated boxes or fast COCOeval, none of
  which pasa_det needs). detectron2 0.6 itself needs Pillow < 10, setuptools < 81
  (pkg_resources) and NumPy < 1.24 (np.bool …): those pins are installed with it.

Run by `make setup` when `import detectron2` fails, and whenever DETECTRON2_SOURCE is set:
an environment whose detectron2 was installed from that same source is left as it is.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request

OFFICIAL = "git+https://github.com/facebookresearch/detectron2.git"
REACH_TIMEOUT_S = 5.0
SDIST = "pb1-detectron2-0.6.tar.gz"
SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
V06_PINS = ["numpy<1.24", "Pillow<10", "setuptools<81", "wheel"]
# Where this script records which source the environment's detectron2 came from.
MARKER = os.path.join(sys.prefix, "pasa_det-detectron2-source.txt")
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


def pip_install(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    if subprocess.call(cmd) != 0:
        fail(f"`{' '.join(cmd)}` failed (see pip's output above)")


def reachable(git_url: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether git can list `git_url` within `timeout` seconds (through the user's proxy
    settings, as the clone that follows would)."""
    if shutil.which("git") is None:
        return False
    try:
        listing = subprocess.run(
            ["git", "ls-remote", "--exit-code", git_url, "HEAD"],
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except subprocess.TimeoutExpired:
        return False
    return listing.returncode == 0


def source_identity(source: str) -> str:
    """What the marker records: a local path with its size and time, so a changed
    archive or checkout is rebuilt; a URL as it is."""
    if os.path.exists(source):
        path = os.path.abspath(source)
        stat = os.stat(path)
        return f"{path} {stat.st_size} {int(stat.st_mtime)}"
    return source


def installed_from(source: str) -> bool:
    try:
        import detectron2  # noqa: F401
    except ImportError:
        return False
    try:
        with open(MARKER) as f:
            return f.read().strip() == source_identity(source)
    except OSError:
        return False


def remove_pypi_detectron2() -> None:
    """pb1-detectron2 and detectron2 install the same package folder: drop the other one first."""
    import importlib.metadata as metadata

    for dist in ("pb1-detectron2", "detectron2"):
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        subprocess.call([sys.executable, "-m", "pip", "uninstall", "-y", "-q", dist])


def install_from_source(source: str) -> None:
    """Build detectron2 with its C++ ops from a checkout, an archive or a pip URL."""
    if not os.path.exists(source) and "://" not in source:
        fail(
            f"DETECTRON2_SOURCE={source!r} is neither an existing path nor a URL "
            f"(e.g. {OFFICIAL}, or `pypi` for detectron2 0.6 from PyPI)"
        )
    if source.startswith("git+") and shutil.which("git") is None:
        fail(f"DETECTRON2_SOURCE={source} needs git on PATH")
    remove_pypi_detectron2()
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
    print(f"== building detectron2 with its C++ ops from {source} (a few minutes)", flush=True)
    # No build isolation: detectron2's setup.py compiles against the installed torch.
    pip_install("--no-build-isolation", source)


def download_pypi_sdist(workdir: str) -> str:
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
        fail(
            f"could not download {SDIST} from {index_url}: {e}. Check network access to PyPI, "
            "or set PIP_INDEX_URL to a mirror's simple index."
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        fail(f"{SDIST} from {url} has sha256 {digest}, expected {SHA256}")
    path = os.path.join(workdir, SDIST)
    with open(path, "wb") as f:
        f.write(data)
    return path


def install_pypi_v06() -> None:
    with tempfile.TemporaryDirectory(prefix="detectron2-build-") as workdir:
        print(f"== downloading {SDIST}", flush=True)
        with tarfile.open(download_pypi_sdist(workdir)) as tar:
            tar.extractall(workdir, filter="data")
        source = os.path.join(workdir, SDIST[: -len(".tar.gz")])
        csrc = os.path.join(source, "detectron2", "layers", "csrc")
        os.makedirs(csrc, exist_ok=True)
        with open(os.path.join(csrc, "vision.cpp"), "w") as f:
            f.write(EMPTY_EXTENSION)
        remove_pypi_detectron2()
        print(
            "== installing detectron2 0.6 (no native ops) and its pins: " + " ".join(V06_PINS),
            flush=True,
        )
        pip_install(*V06_PINS)
        pip_install("--no-build-isolation", source, *V06_PINS)


def main() -> None:
    try:
        import torch  # noqa: F401  (setup.py imports it: built without isolation)
    except ImportError:
        fail("torch must be installed before detectron2")
    source = os.environ.get("DETECTRON2_SOURCE", "").strip()
    if source and installed_from(source):
        print(f"== detectron2 from {source} is already installed here", flush=True)
        return
    if not source:
        if reachable(OFFICIAL[len("git+") :]):
            source = OFFICIAL
        else:
            print(
                f"== {OFFICIAL} cannot be reached (or git is missing): detectron2 0.6 from PyPI instead; "
                "set DETECTRON2_SOURCE to a detectron2 checkout or archive for current detectron2",
                flush=True,
            )
            source = "pypi"
    if source == "pypi":
        install_pypi_v06()
    else:
        install_from_source(source)
    with open(MARKER, "w") as f:
        f.write(source_identity(source) + "\n")


if __name__ == "__main__":
    main()
