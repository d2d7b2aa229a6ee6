"""Packaging: importing without detectron2, and the shipped config fragment."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_without_detectron2_says_how_to_install():
    code = "import sys; sys.modules['detectron2'] = None; import pasa_det"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0
    assert "ImportError: pasa_det needs detectron2" in run.stderr
    assert "make setup" in run.stderr


def test_installed_requirements_leave_out_detectron2():
    from importlib.metadata import requires

    requirements = requires("pasa_det")
    assert any(r.startswith("torch") for r in requirements)
    assert not [r for r in requirements if "detectron2" in r]
