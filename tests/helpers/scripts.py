"""The repository's tools run as a user runs them (a subprocess in the repository root,
output captured), or a script loaded as a module to call its functions."""

import importlib.util
import os
import subprocess
import sys

from tests.helpers.paths import ROOT, TOOLS


def run_tool(name: str, *args, timeout: float = 600, cwd=ROOT) -> subprocess.CompletedProcess:
    """`python tools/<name> ARGS…`; the caller checks `returncode` and shows `stderr`."""
    return subprocess.run(
        [sys.executable, os.path.join(TOOLS, name), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_script(relative_path: str):
    """The script at `relative_path` (from the repository root) as a module."""
    name = os.path.splitext(os.path.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
