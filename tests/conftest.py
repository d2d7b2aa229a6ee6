import os

import torch

# Without a GPU, Triton kernels run through Triton's CPU interpreter, which must be
# chosen before pasa_det (and so triton) is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
