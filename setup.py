"""pasa_det: anti-aliased (PASA / LPF) backbones for detectron2.

detectron2 is deliberately not in install_requires: pip cannot resolve it from
PyPI. `make setup` installs it (see dev/build_detectron2.py).

`pasa_det._C`, PASA's C++ CPU kernel, is compiled here against the installed
torch (hence `pip install --no-build-isolation`). Set PASA_DET_NO_NATIVE=1 to
skip it; PASA then runs its torch implementation, slower on the CPU.
"""

import os

from setuptools import find_packages, setup


def native_extensions():
    if os.environ.get("PASA_DET_NO_NATIVE") == "1":
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    kernel = CppExtension(
        "pasa_det._C",
        ["pasa_det/layers/csrc/pasa_cpu.cpp"],
        extra_compile_args=["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"],
        extra_link_args=["-fopenmp"],
    )
    return [kernel], {"build_ext": BuildExtension}


ext_modules, cmdclass = native_extensions()

setup(
    name="pasa_det",
    version="0.1.0",
    description="Pixel-adaptive anti-aliasing (PASA, BMVC 2020) backbones for detectron2",
    packages=find_packages(include=["pasa_det", "pasa_det.*"]),
    python_requires=">=3.8",
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    # opencv: detectron2's Visualizer imports cv2 (demo pictures).
    install_requires=[
        "torch>=1.10",
        "torchvision>=0.11",
        "numpy",
        "opencv-python-headless",
        "matplotlib",  # figures: filters (tools/visualize_filters.py), shift curves and strips
    ],
    extras_require={
        # Cityscapes label preparation and instance AP (detectron2 imports it lazily).
        # cityscapesscripts 2.3.0, the latest, calls np.in1d, which NumPy 2.4 removed.
        "cityscapes": ["cityscapesscripts", "numpy<2.4"],
        # tools/export_model.py and torch.onnx.export: ONNX files, onnxruntime to check them,
        # onnxscript for the dynamo exporter.
        "export": ["onnx", "onnxruntime", "onnxscript"],
        # Formatters pinned: their output changes between releases (`make lint`).
        "test": [
            "pytest>=7.3",
            "hypothesis",
            "cityscapesscripts",
            "numpy<2.4",
            "ruff==0.17.6",
            "clang-format==23.1.5",
            "onnx",
            "onnxruntime",
            "onnxscript",
        ],
        "dev": [
            "pytest>=7.3",
            "cityscapesscripts",
            "numpy<2.4",
            "ruff==0.17.6",
            "clang-format==23.1.5",
        ],
    },
)
