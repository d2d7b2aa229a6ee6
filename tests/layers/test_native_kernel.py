"""The C++ kernel (`pasa_det._C`, through the operator `pasa_det::softmax_subsample`) and
the padded convolution without a padded copy (`conv2d_same`), against plain torch ops."""

import itertools
import os

import pytest
import torch
import torch.nn.functional as F

from pasa_det.layers import PASA
from pasa_det.layers.kernels import native_available, softmax_subsample
from pasa_det.layers.padding import _ConvSame, conv2d_same, pad_same
from pasa_det.layers.pasa import weighted_subsample


@pytest.mark.skipif(
    native_available(), reason="the C++ kernel is built: auto picks it (tested below)"
)
def test_auto_impl_without_the_kernel_is_the_torch_path_on_the_cpu():
    assert PASA(16).resolved_impl(torch.randn(1, 16, 8, 8)) == "torch"
    with pytest.raises(ValueError, match="needs the C\\+\\+ kernel"):
        PASA(16, impl="native")


def test_native_kernel_is_built():
    """`make setup` compiles it; only PASA_DET_NO_NATIVE=1 leaves it out."""
    assert native_available() or os.environ.get("PASA_DET_NO_NATIVE") == "1"


def _grads(out, inputs, seed=0):
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, [t for t in inputs if t is not None], grad)


@pytest.mark.parametrize(
    "size, kernel_size, stride, pad_mode",
    [
        *itertools.product(
            [(1, 1), (2, 3), (5, 4), (9, 8), (12, 17)],
            [1, 3, 5],
            [1, 2, 3],
            ["reflect", "replicate"],
        ),
        ((30, 41), 3, 2, "zeros"),
    ],
)
def test_conv_same_border_path_equals_conv_of_padded_input(size, kernel_size, stride, pad_mode):
    """The gathered-border convolution itself, on every size (conv2d_same copies
    small maps instead): values and all three gradients, float64."""
    if pad_mode == "reflect" and min(size) <= kernel_size // 2:
        pad_mode = "replicate"
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, kernel_size, kernel_size, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    expected = F.conv2d(pad_same(x, kernel_size // 2, pad_mode), weight, bias, stride)
    if pad_mode == "zeros":
        got = conv2d_same(x, weight, bias, stride, pad_mode)
    else:
        got = _ConvSame.apply(x, weight, bias, stride, pad_mode)
    torch.testing.assert_close(got, expected)
    for g, e in zip(_grads(got, (x, weight, bias)), _grads(expected, (x, weight, bias))):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("size", [(40, 48), (41, 57), (6, 7)])
def test_conv_same_without_bias_and_input_gradient(size):
    x = torch.randn(1, 5, *size)
    weight = torch.randn(6, 5, 3, 3, requires_grad=True)
    expected = F.conv2d(pad_same(x, 1, "reflect"), weight, None, 2)
    got = conv2d_same(x, weight, None, 2, "reflect")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        _grads(got, (weight,))[0], _grads(expected, (weight,))[0], rtol=1e-4, atol=1e-4
    )


def test_conv_same_under_autocast_computes_in_the_autocast_dtype():
    x = torch.randn(2, 8, 40, 46, requires_grad=True)
    weight = torch.randn(16, 8, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv2d_same(x, weight, None, 2, "reflect")
        expected = F.conv2d(pad_same(x, 1, "reflect"), weight, None, 2)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=0.02, atol=0.1)
    for g, e in zip(_grads(got, (x, weight)), _grads(expected, (x, weight))):
        assert g.dtype == e.dtype == torch.float32
        torch.testing.assert_close(g, e, rtol=0.02, atol=0.3)


def _reference_weights(logits, group, kernel_size, joint):
    n, _, h, w = logits.shape
    if joint:
        return logits.softmax(1).view(n, group, kernel_size**2, h, w)
    return logits.view(n, group, kernel_size**2, h, w).softmax(2)


@pytest.mark.native
@pytest.mark.parametrize(
    "shape, kernel_size, stride, group, joint, pad_mode",
    [
        ((2, 8, 9, 11), 3, 2, 4, True, "reflect"),
        ((1, 4, 10, 7), 5, 2, 2, False, "zeros"),
        ((2, 6, 13, 12), 3, 3, 3, True, "replicate"),
        ((1, 4, 3, 3), 5, 2, 1, True, "replicate"),
        ((1, 4, 8, 8), 3, 1, 2, False, "reflect"),
    ],
)
def test_fused_softmax_subsample_matches_torch_and_gradchecks(
    shape, kernel_size, stride, group, joint, pad_mode
):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    out_hw = [(s - 1) // stride + 1 for s in shape[-2:]]
    logits = torch.randn(
        shape[0], group * kernel_size**2, *out_hw, dtype=torch.float64, requires_grad=True
    )
    args = (kernel_size, stride, group, joint, pad_mode)
    got = softmax_subsample(x, logits, *args)
    weights = _reference_weights(logits, group, kernel_size, joint)
    expected = weighted_subsample(
        pad_same(x, kernel_size // 2, pad_mode), weights, kernel_size, stride
    )
    torch.testing.assert_close(got, expected)
    for g, e in zip(_grads(got, (x, logits)), _grads(expected, (x, logits))):
        torch.testing.assert_close(g, e)
    assert torch.autograd.gradcheck(lambda a, b: softmax_subsample(a, b, *args), (x, logits))


@pytest.mark.native
def test_fused_float32_softmax_is_accurate_on_large_logits():
    """The kernel's float32 exp is a polynomial: check it over a wide logit range."""
    x = torch.randn(1, 8, 16, 16)
    logits = torch.randn(1, 72, 8, 8) * 30
    got = softmax_subsample(x, logits, 3, 2, 8, True, "reflect")
    weights = _reference_weights(logits.double(), 8, 3, True)
    expected = weighted_subsample(pad_same(x.double(), 1, "reflect"), weights, 3, 2)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.native
def test_fused_forward_keeps_filters_only_for_backward():
    from pasa_det import _C

    x, logits = torch.randn(1, 8, 6, 6), torch.randn(1, 72, 3, 3)
    out, kept = _C.pasa_forward(x, logits, 3, 2, 8, True, 0, False)
    assert kept is None and out.shape == (1, 8, 3, 3)
    _, kept = _C.pasa_forward(x, logits, 3, 2, 8, True, 0, True)
    torch.testing.assert_close(kept, logits.softmax(1))


@pytest.mark.native
def test_auto_impl_picks_native_on_cpu_float_and_fast_elsewhere():
    m = PASA(16)
    assert m.resolved_impl(torch.randn(1, 16, 8, 8)) == "native"
    assert m.resolved_impl(torch.randn(1, 16, 8, 8, dtype=torch.bfloat16)) == "torch"
    assert PASA(16, impl="torch").resolved_impl(torch.randn(1, 16, 8, 8)) == "torch"
    with pytest.raises(ValueError, match="float32/float64 CPU"):
        PASA(16, impl="native")(torch.randn(1, 16, 8, 8, dtype=torch.bfloat16))


def test_conv_same_border_path_with_channels_last_input():
    x = torch.randn(2, 8, 64, 80).to(memory_format=torch.channels_last).requires_grad_()
    weight = torch.randn(16, 8, 3, 3, requires_grad=True)
    got = _ConvSame.apply(x, weight, None, 2, "reflect")
    expected = F.conv2d(pad_same(x, 1, "reflect"), weight, None, 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for g, e in zip(_grads(got, (x, weight)), _grads(expected, (x, weight))):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)
