"""pasa_det.layers is plain torch, usable as antialiased-cnns' BlurPool is: it imports and
runs where detectron2 is not installed; the rest of pasa_det says how to get detectron2."""

import subprocess
import sys

HIDE_DETECTRON2 = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "detectron2" or name.startswith("detectron2."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
"""


def run(code: str):
    return subprocess.run(
        [sys.executable, "-c", HIDE_DETECTRON2 + code], capture_output=True, text=True
    )


def test_layers_import_and_run_without_detectron2():
    result = run(
        "import torch\n"
        "from pasa_det.layers import PASA, LowPassFilter\n"
        "x = torch.randn(1, 16, 9, 9)\n"
        "print(tuple(PASA(16)(x).shape), tuple(LowPassFilter(16)(x).shape))\n"
        "print(sorted(m for m in sys.modules if m.startswith('detectron2')))\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["(1, 16, 5, 5) (1, 16, 5, 5)", "[]"]


def test_the_rest_of_pasa_det_names_what_is_missing_and_how_to_install_it():
    result = run("import pasa_det\npasa_det.add_pasa_config\n")
    assert result.returncode != 0
    assert "pasa_det needs detectron2" in result.stderr and "make setup" in result.stderr
