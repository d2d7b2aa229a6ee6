"""pasa_det: anti-aliased (PASA / LPF) backbones for detectron2.

detectron2 is deliberately not in install_requires: pip cannot resolve it from
PyPI. `make setup` installs it (see dev/build_detectron2.py).
"""
from setuptools import find_packages, setup

setup(
    name="pasa_det",
    version="0.1.0",
    description="Pixel-adaptive anti-aliasing (PASA, BMVC 2020) backbones for detectron2",
    packages=find_packages(include=["pasa_det", "pasa_det.*"]),
    python_requires=">=3.8",
    # opencv: detectron2's Visualizer imports cv2 (demo pictures).
    install_requires=["torch>=1.10", "torchvision>=0.11", "numpy", "opencv-python-headless"],
    extras_require={
        # Cityscapes label preparation and instance AP (detectron2 imports it lazily).
        "cityscapes": ["cityscapesscripts"],
        "test": ["pytest>=7", "hypothesis", "cityscapesscripts"],
        "dev": ["pytest>=7", "cityscapesscripts", "ruff"],
    },
)
