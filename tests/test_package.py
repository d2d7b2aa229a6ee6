"""Packaging: pasa_det's install requirements leave detectron2 out (pip cannot resolve it;
set-up installs it). Importing without detectron2: layers/test_without_detectron2.py."""


def test_installed_requirements_leave_out_detectron2():
    from importlib.metadata import requires

    requirements = requires("pasa_det")
    assert any(r.startswith("torch") for r in requirements)
    assert not [r for r in requirements if "detectron2" in r]
