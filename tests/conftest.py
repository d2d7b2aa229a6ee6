import os

import torch

# Without a GPU, Triton kernels run through Triton's CPU interpreter, which must be
# chosen before pasa_det (and so triton) is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from pasa_det.layers.pasa import native_available  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked `native` need the C++ kernel: skipped, with the reason, without it."""
    if native_available():
        return
    skip = pytest.mark.skip(
        reason="the C++ kernel pasa_det._C is not built or PASA_DET_NO_NATIVE=1"
    )
    for item in items:
        if "native" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
