"""PASA and LowPassFilter: filter sums, constant inputs, gradients, hand-computed blurs,
and the implementations against each other. (Equality with the published formulation
over shapes, strides, groups and padding: test_operator_properties.py.)"""

import pytest
import torch
import torch.nn.functional as F

from pasa_det.layers import PASA, LowPassFilter, binomial_kernel
from pasa_det.layers.reference import autograd_pasa
from tests.helpers.reference_pasa import published_pasa, randomize_norms_


def make_pasa(channels, **kwargs):
    return randomize_norms_(PASA(channels, **kwargs)).eval()


def reference(m: PASA, x):
    return published_pasa(
        x, m.conv.weight, m.norm, m.kernel_size, m.stride, m.group, m.softmax, m.pad_mode
    )


def test_group_softmax_filters_sum_to_one_and_joint_do_not():
    x = torch.randn(2, 16, 12, 12)
    for softmax, per_group_sum_is_one in [("group", True), ("joint", False)]:
        m = make_pasa(16, group=4, softmax=softmax)
        with torch.no_grad():
            weights = m.filter_weights(x)
        sums = weights.sum(dim=2)  # (N, G, H, W)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5) == per_group_sum_is_one
        torch.testing.assert_close(
            sums.sum(dim=1), torch.full_like(sums[:, 0], 1.0 if softmax == "joint" else 4.0)
        )


def test_pasa_on_constant_input_with_group_softmax_is_identity():
    m = make_pasa(8, group=2, softmax="group")
    x = torch.full((1, 8, 6, 6), 3.0)
    with torch.no_grad():
        torch.testing.assert_close(m(x), torch.full((1, 8, 3, 3), 3.0))


@pytest.mark.parametrize("softmax", ["joint", "group"])
def test_pasa_gradcheck_float64(softmax):
    m = PASA(4, kernel_size=3, group=2, norm="", init="random", softmax=softmax).double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = m.conv.weight.detach().clone().requires_grad_()

    def pasa(inp, w):
        return torch.func.functional_call(m, {"conv.weight": w}, (inp,))

    assert torch.autograd.gradcheck(pasa, (x, weight))


def test_pasa_training_mode_matches_reference_with_batch_statistics_over_kept_positions():
    m = PASA(8, group=2, init="random").train()
    x = torch.randn(3, 8, 10, 10)
    out = m(x)
    # Reference: BN statistics over the strided logits only.
    logits = F.conv2d(F.pad(x, (1,) * 4, mode="reflect"), m.conv.weight, stride=2)
    mean = logits.mean(dim=(0, 2, 3))
    assert torch.allclose(m.norm.running_mean, 0.1 * mean, atol=1e-5)
    out.sum().backward()
    assert m.conv.weight.grad is not None and m.conv.weight.grad.abs().sum() > 0


def test_pasa_batch_zero_channels_last_and_tiny_maps():
    m = make_pasa(16, group=8)
    assert m(torch.randn(0, 16, 7, 9)).shape == (0, 16, 4, 5)
    x = torch.randn(2, 16, 11, 12)
    with torch.no_grad():
        torch.testing.assert_close(m(x.to(memory_format=torch.channels_last)), m(x))
    m5 = make_pasa(16, kernel_size=5)
    for size in [(1, 1), (2, 3), (1, 7)]:
        x = torch.randn(1, 16, *size)
        with torch.no_grad():
            out = m5(x)
            torch.testing.assert_close(out, reference(m5, x), rtol=0, atol=1e-5)
        assert out.shape == (1, 16, (size[0] + 1) // 2, (size[1] + 1) // 2)


@pytest.mark.parametrize("dtype, atol", [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
def test_pasa_half_precision_close_to_float32(dtype, atol):
    m = make_pasa(16)
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        expected = m(x)
        with torch.autocast("cpu", dtype=dtype):
            autocast_out = m(x)
            assert (
                m(x.to(dtype)).dtype == dtype
            )  # CPU autocast pads in float32; PASA keeps the input's dtype
        half_out = m.to(dtype)(x.to(dtype))
    assert half_out.dtype == dtype
    for out in (autocast_out, half_out):
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.float(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"group": 3}, "group"),
        ({"group": 0}, "group"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"stride": 0}, "stride"),
        ({"pad_mode": "mirror"}, "pad_mode"),
        ({"softmax": "channel"}, "softmax"),
        ({"norm": "LN"}, "norm"),
    ],
)
def test_pasa_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PASA(16, **kwargs)


def test_lowpass_equals_hand_computed_binomial_blur():
    torch.testing.assert_close(
        binomial_kernel(3), torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0
    )
    row5 = torch.tensor([1.0, 4, 6, 4, 1])
    torch.testing.assert_close(binomial_kernel(5), torch.outer(row5, row5) / 256)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 1, 2] = 10.0
    out = LowPassFilter(1, kernel_size=3, stride=2)(x)
    # Output (0, 0) sits on input (0, 0); reflect padding mirrors row/col 1 into -1.
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")[0, 0]
    k = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    by_hand = [
        [
            sum(k[i][j] * padded[2 * a + i, 2 * b + j].item() for i in range(3) for j in range(3))
            / 16
            for b in range(2)
        ]
        for a in range(2)
    ]
    torch.testing.assert_close(out[0, 0], torch.tensor(by_hand))
    assert by_hand[0][0] == pytest.approx(
        (1 * 5 + 2 * 4 + 1 * 5 + 2 * 1 + 4 * 0 + 2 * 1 + 1 * 5 + 2 * 4 + 1 * 5) / 16
    )


def test_lowpass_is_depthwise_odd_sized_and_not_in_state_dict():
    f = LowPassFilter(3, kernel_size=5)
    assert list(f.state_dict()) == []
    x = torch.randn(2, 3, 9, 7)
    out = f(x)
    assert out.shape == (2, 3, 5, 4)
    single = LowPassFilter(1, kernel_size=5)(x[:, 1:2])
    torch.testing.assert_close(out[:, 1:2], single)
    assert LowPassFilter(3)(torch.randn(1, 3, 1, 1)).shape == (1, 3, 1, 1)
    with pytest.raises(ValueError, match="kernel_size"):
        LowPassFilter(3, kernel_size=2)


def _impl_and_autograd(impl, channels, **kwargs):
    tested = randomize_norms_(PASA(channels, impl=impl, **kwargs))
    reference = PASA(channels, impl=impl, **kwargs)
    reference.load_state_dict(tested.state_dict())
    return tested, reference


def _output_and_grads(m, x, grad_out_seed=1, forward=None):
    """The output and the gradients of x and the logit conv's weight, of `m(x)` or of
    `forward(m, x)`."""
    x = x.detach().requires_grad_()
    out = m(x) if forward is None else forward(m, x)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_out_seed))
    out.backward(grad_out)
    return out, x.grad, m.conv.weight.grad


@pytest.mark.parametrize(
    "kwargs, size",
    [
        ({}, (13, 10)),
        ({}, (40, 47)),  # large enough for the gathered-border convolution
        ({"kernel_size": 5, "softmax": "group"}, (9, 16)),
        ({"stride": 3, "pad_mode": "zeros", "group": 2}, (11, 7)),
        ({"kernel_size": 5}, (1, 2)),  # replicate fallback
    ],
)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("impl", [pytest.param("native", marks=pytest.mark.native), "torch"])
def test_impls_match_autograd_forward_and_gradients(impl, kwargs, size, train, channels_last):
    tested, reference = (m.train(train) for m in _impl_and_autograd(impl, 16, **kwargs))
    x = torch.randn(2, 16, *size)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    expected = _output_and_grads(reference, x, forward=autograd_pasa)
    for got, want in zip(_output_and_grads(tested, x), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_weighted_subsample_gradcheck_float64():
    from pasa_det.layers.pasa import WeightedSubsample

    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(2, 2, 9, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: WeightedSubsample.apply(a, w, 3, 2), (x, weights))
    weights5 = torch.rand(2, 1, 25, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, w: WeightedSubsample.apply(a, w, 5, 3), (x[:, :, :5, :5], weights5)
    )


@pytest.mark.parametrize("dtype, atol", [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
def test_fast_impl_autocast_training_gradients_close_to_float32(dtype, atol):
    """Softmax stays float32 under autocast; the half-precision logit conv is the
    only source of error, so gradients stay within a few half-precision ulps."""
    m = randomize_norms_(PASA(16)).train()
    x = torch.randn(2, 16, 12, 12)
    out, grad_x, grad_w = _output_and_grads(m, x)
    m.conv.weight.grad = None
    with torch.autocast("cpu", dtype=dtype):
        half = _output_and_grads(m, x)
    for got, expected in zip(half, (out, grad_x, grad_w)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), expected, rtol=atol, atol=atol)


def test_fast_impl_batch_zero_backward_and_invalid_impl():
    x = torch.randn(0, 16, 7, 9, requires_grad=True)
    PASA(16).train()(x).sum().backward()
    assert x.grad.shape == x.shape
    with pytest.raises(ValueError, match="impl"):
        PASA(16, impl="compiled")


@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_fresh_pasa_filters_as_lpf(kernel_size, train, pad_mode):
    """init="lpf": every position predicts the binomial filter: group softmax gives LPF's
    output, joint softmax LPF's output divided by G (each group's share of one unit)."""
    x = torch.randn(2, 16, 13, 10)
    lpf = LowPassFilter(16, kernel_size, pad_mode=pad_mode)(x)
    for softmax, scale in [("group", 1.0), ("joint", 1 / 4)]:
        m = PASA(16, kernel_size, group=4, pad_mode=pad_mode, softmax=softmax).train(train)
        torch.testing.assert_close(m(x), lpf * scale, rtol=1e-5, atol=1e-6)


def test_fresh_pasa_learns_its_filters_from_the_norm_scale():
    m = PASA(8, group=2)
    m(torch.randn(2, 8, 9, 9)).square().sum().backward()
    assert m.norm.weight.grad.abs().sum() > 0  # the way out of the binomial start
    assert m.conv.weight.grad.abs().sum() == 0  # moves once the scale has


def test_random_init_is_the_published_start():
    m = PASA(8, group=2, init="random")
    assert torch.equal(m.norm.weight, torch.ones(18)) and torch.equal(m.norm.bias, torch.zeros(18))
    with torch.no_grad():
        weights = m.filter_weights(torch.randn(1, 8, 9, 9))
    assert weights.std() > 0.01  # not one fixed filter


def test_lpf_init_needs_a_norm_and_init_is_checked():
    with pytest.raises(ValueError, match=r"init='lpf' sets the logit norm's shift.*init='random'"):
        PASA(8, group=2, norm="")
    with pytest.raises(ValueError, match=r"init must be one of \('lpf', 'random'\)"):
        PASA(8, group=2, init="binomial")
