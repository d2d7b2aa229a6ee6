"""PASA's operator registration, and PASA and LowPassFilter through torch.compile
(fullgraph, no graph break) and torch.export (dynamic height and width), equal to eager."""

import pytest
import torch
from torch.export import Dim

from pasa_det.layers import PASA, LowPassFilter
from pasa_det.layers.kernels import native_available
from tests.helpers.reference_pasa import randomize_norms_


def _modules():
    """(name, module) for each path a backbone can take on the CPU."""
    yield "lpf", LowPassFilter(16)
    yield "pasa-torch", randomize_norms_(PASA(16, group=4, impl="torch", init="random"))
    if native_available():
        yield "pasa-native", randomize_norms_(PASA(16, group=4, impl="native", init="random"))


MODULES = dict(_modules())


def _output_and_grads(m, x):
    """The output and, in training mode, the gradients of x and the parameters (the
    batch statistics alone enter the output then: running ones need no reset)."""
    x = x.detach().requires_grad_(m.training)
    out = m(x)
    if not m.training:
        return [out]
    leaves = [x, *m.parameters()]
    return [out, *torch.autograd.grad(out, leaves, torch.ones_like(out))]


@pytest.mark.native
@pytest.mark.parametrize("keep", [True, False])
def test_operator_schema_fake_and_autograd_registrations(keep):
    """torch.library's own checks of `pasa_det::softmax_subsample`: schema, the fake
    implementation's shapes against the kernel's, autograd registration, and the op
    under AOTAutograd with dynamic shapes."""
    x = torch.randn(2, 8, 9, 7, dtype=torch.float64, requires_grad=keep)
    logits = torch.randn(2, 36, 5, 4, dtype=torch.float64, requires_grad=keep)
    args = (x, logits, 3, 2, 4, True, "reflect", keep)
    torch.library.opcheck(torch.ops.pasa_det.softmax_subsample.default, args)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", list(MODULES))
def test_compiles_in_one_graph_and_matches_eager(name, train):
    m = MODULES[name].train(train)
    x = torch.randn(2, 16, 13, 10)
    torch._dynamo.reset()
    # fullgraph: any graph break raises. aot_eager: AOTAutograd's forward and backward
    # graphs, run without inductor's code generation (tested once below, slow).
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    for got, want in zip(_output_and_grads(compiled, x), _output_and_grads(m, x)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.native
def test_inductor_compiled_pasa_matches_eager_forward_and_backward():
    m = MODULES["pasa-native"].train()
    x = torch.randn(2, 16, 12, 14)
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True)
    for got, want in zip(_output_and_grads(compiled, x), _output_and_grads(m, x)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODULES))
def test_export_with_dynamic_size_matches_eager_at_another_size(name):
    m = MODULES[name].eval()
    sizes = {"x": {2: Dim("height", min=3), 3: Dim("width", min=3)}}
    program = torch.export.export(m, (torch.randn(2, 16, 20, 22),), dynamic_shapes=sizes)
    exported = program.module()
    with torch.no_grad():
        for size in [(20, 22), (33, 17), (3, 4)]:
            x = torch.randn(2, 16, *size)
            torch.testing.assert_close(exported(x), m(x), rtol=1e-6, atol=1e-6)
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert ("pasa_det.softmax_subsample.default" in ops) == (name == "pasa-native")
