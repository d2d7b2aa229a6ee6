"""PASA's Triton kernels (`pasa_det.layers.kernels.pasa_triton`) against plain torch ops.
Without a GPU they run through Triton's interpreter on CPU tensors (conftest.py)."""

import pytest
import torch

from pasa_det.layers import PASA
from pasa_det.layers.kernels import ops, pasa_triton
from pasa_det.layers.padding import PAD_MODES, pad_same
from pasa_det.layers.pasa import weighted_subsample
from pasa_det.layers.reference import autograd_pasa

pytestmark = pytest.mark.skipif(
    not pasa_triton.triton_available(), reason="triton is not installed"
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _reference(x, logits, kernel_size, stride, group, joint, pad_mode):
    n, _, h, w = logits.shape
    shape = (n, group, kernel_size**2, h, w)
    weights = logits.softmax(1).view(shape) if joint else logits.view(shape).softmax(2)
    return weighted_subsample(
        pad_same(x, kernel_size // 2, pad_mode), weights, kernel_size, stride
    ), weights


@pytest.mark.parametrize(
    "shape, kernel_size, stride, group, joint, pad_mode",
    [
        ((2, 16, 9, 11), 3, 2, 8, True, "reflect"),
        ((1, 12, 10, 7), 5, 2, 4, False, "zeros"),  # 3 channels per group: a masked channel block
        ((1, 80, 6, 5), 3, 2, 2, True, "replicate"),  # 40 channels per group: two channel blocks
        ((1, 4, 24, 23), 3, 2, 1, True, "reflect"),  # 144 outputs: two pixel blocks
        ((1, 8, 13, 12), 5, 3, 2, False, "reflect"),
        ((1, 4, 3, 3), 5, 2, 2, True, "replicate"),
    ],
)
def test_forward_filters_and_gradients_match_plain_ops(
    shape, kernel_size, stride, group, joint, pad_mode
):
    x = torch.randn(*shape, dtype=torch.float64, device=DEVICE, requires_grad=True)
    out_hw = [(s - 1) // stride + 1 for s in shape[-2:]]
    logits = torch.randn(
        shape[0],
        group * kernel_size**2,
        *out_hw,
        dtype=torch.float64,
        device=DEVICE,
        requires_grad=True,
    )
    expected, weights = _reference(x, logits, kernel_size, stride, group, joint, pad_mode)
    grad_y = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (x, logits), grad_y)
    mode = PAD_MODES.index(pad_mode)
    y, kept = pasa_triton.pasa_forward(
        x.float().detach(), logits.float().detach(), kernel_size, stride, group, joint, mode, True
    )
    grads = pasa_triton.pasa_backward(
        grad_y.float(), x.float().detach(), kept, kernel_size, stride, group, joint, mode
    )
    tolerance = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.double(), expected, **tolerance)
    torch.testing.assert_close(kept.double(), weights.flatten(1, 2), **tolerance)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, **tolerance)
    assert (
        pasa_triton.pasa_forward(
            x.float().detach(),
            logits.float().detach(),
            kernel_size,
            stride,
            group,
            joint,
            mode,
            False,
        )[1]
        is None
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_accumulate_in_float32(dtype):
    x = torch.randn(1, 16, 12, 10, device=DEVICE)
    logits = torch.randn(1, 72, 6, 5, device=DEVICE)
    expected, _ = _reference(
        x.to(dtype).double(), logits.to(dtype).double(), 3, 2, 8, True, "reflect"
    )
    y, _ = pasa_triton.pasa_forward(x.to(dtype), logits.to(dtype), 3, 2, 8, True, 0, False)
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), expected, rtol=0.01, atol=0.01)


def test_operators_cuda_kernels_are_the_triton_kernels():
    """The adapters registered as `pasa_det::softmax_subsample`'s CUDA kernels (run here
    on whatever DEVICE is, through the interpreter without a GPU) against the C++ kernel,
    which serves the same operator on the CPU, or the torch path without it."""
    x = torch.randn(2, 8, 9, 11, device=DEVICE)
    logits = torch.randn(2, 36, 5, 6, device=DEVICE)
    y, weights = ops._forward_cuda(x, logits, 3, 2, 4, False, "reflect", True)
    expected, expected_weights = _reference(x, logits, 3, 2, 4, False, "reflect")
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights, expected_weights.flatten(1, 2), rtol=1e-5, atol=1e-5)
    assert ops._forward_cuda(x, logits, 3, 2, 4, False, "reflect", False)[1].numel() == 0
    grad_y = torch.randn_like(y)
    grad_x, grad_logits = ops._backward_cuda(grad_y, x, weights, 3, 2, 4, False, "reflect")
    x, logits = x.requires_grad_(), logits.requires_grad_()
    want = torch.autograd.grad(
        _reference(x, logits, 3, 2, 4, False, "reflect")[0], (x, logits), grad_y
    )
    torch.testing.assert_close(grad_x, want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_logits, want[1], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="impl='triton' runs on CUDA tensors")
@pytest.mark.parametrize("train", [False, True])
def test_pasa_triton_impl_matches_autograd_with_gradients(train):
    reference = PASA(16, 3, stride=2, group=8, impl="torch").to(DEVICE).train(train)
    fused = PASA(16, 3, stride=2, group=8, impl="triton").to(DEVICE).train(train)
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(2, 16, 11, 14, device=DEVICE, requires_grad=True)
    outs, grads = [], []
    for m, out in ((reference, autograd_pasa(reference, x)), (fused, fused(x))):
        outs.append(out)
        grads.append(torch.autograd.grad(out, (x, m.conv.weight), torch.ones_like(out)))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_triton_impl_refuses_cpu_tensors():
    m = PASA(16, impl="triton")
    with pytest.raises(ValueError, match="CUDA tensors"):
        m(torch.randn(1, 16, 8, 8))
    assert PASA(16).resolved_impl(torch.randn(1, 16, 8, 8)) != "triton"
