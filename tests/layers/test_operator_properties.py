"""Property tests: PASA and LowPassFilter equal their naive references over shapes,
strides, groups, kernel sizes, padding, dtypes and memory layouts (eval mode)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pasa_det.layers import PASA, LowPassFilter, binomial_kernel
from pasa_det.layers.padding import pad_same
from pasa_det.layers.reference import published_pasa

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def layout(x, kind):
    """`x` (values unchanged) stored contiguous, channels_last, or as a strided slice."""
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "slice":
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x.contiguous()


inputs = st.fixed_dictionaries(
    {
        "n": st.integers(1, 2),
        "height": st.integers(1, 9),
        "width": st.integers(1, 9),
        "kernel": st.sampled_from([1, 3, 5]),
        "stride": st.integers(1, 3),
        "pad_mode": st.sampled_from(["reflect", "replicate", "zeros"]),
        "dtype": st.sampled_from([torch.float32, torch.float64]),
        "layout": st.sampled_from(["contiguous", "channels_last", "slice"]),
        "seed": st.integers(0, 2**16),
    }
)


@settings(max_examples=40, deadline=None)
@given(
    case=inputs,
    group=st.sampled_from([1, 2, 4, 8]),
    per_group=st.integers(1, 3),
    softmax=st.sampled_from(["joint", "group"]),
)
def test_pasa_equals_the_published_formulation(case, group, per_group, softmax):
    torch.manual_seed(case["seed"])
    channels = group * per_group
    m = PASA(
        channels,
        case["kernel"],
        case["stride"],
        group=group,
        pad_mode=case["pad_mode"],
        softmax=softmax,
    )
    m = m.to(case["dtype"]).eval()
    with torch.no_grad():
        m.norm.running_mean.normal_(0, 0.1)
        m.norm.running_var.uniform_(0.5, 1.5)
        x = torch.randn(case["n"], channels, case["height"], case["width"], dtype=case["dtype"])
        out = m(layout(x, case["layout"]))
        # The reference applies the strided conv's weight at full resolution.
        expected = published_pasa(
            x,
            m.conv.weight,
            m.norm,
            case["kernel"],
            case["stride"],
            group,
            softmax,
            case["pad_mode"],
        )
    assert out.shape == (
        case["n"],
        channels,
        -(-case["height"] // case["stride"]),
        -(-case["width"] // case["stride"]),
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=TOLERANCE[case["dtype"]])


@settings(max_examples=40, deadline=None)
@given(case=inputs, channels=st.integers(1, 5))
def test_lowpass_filter_equals_a_tap_by_tap_sum(case, channels):
    torch.manual_seed(case["seed"])
    k, s = case["kernel"], case["stride"]
    m = LowPassFilter(channels, k, s, pad_mode=case["pad_mode"])
    x = torch.randn(case["n"], channels, case["height"], case["width"], dtype=case["dtype"])
    out = m(layout(x, case["layout"]))
    padded, kernel = pad_same(x, k // 2, case["pad_mode"]), binomial_kernel(k).to(case["dtype"])
    h, w = case["height"], case["width"]
    expected = sum(
        kernel[i, j] * padded[:, :, i : i + h, j : j + w] for i in range(k) for j in range(k)
    )[:, :, ::s, ::s]
    torch.testing.assert_close(out, expected, rtol=0, atol=TOLERANCE[case["dtype"]])
