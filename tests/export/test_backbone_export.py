"""The quick config's R-18-FPN backbone with each filter through torch.compile (fullgraph),
torch.export (dynamic height and width) and ONNX (dynamo and legacy exporters, run in
onnxruntime), equal to eager at two input sizes. PASA compiles and exports by default;
LPF and the plain backbone, and ONNX (minutes on two cores), in the slow run."""

import onnxruntime
import pytest
import torch
from detectron2.modeling import build_backbone
from torch.export import Dim

from pasa_det.config import load_config
from tests.helpers.paths import QUICK_INSTANCE

SIZES = [(96, 128), (128, 96)]  # multiples of 32 (FPN), every level above 1x1 (export)
AA_TYPES = [
    pytest.param("none", marks=pytest.mark.slow),
    pytest.param("lpf", marks=pytest.mark.slow),
    "pasa",
]


def backbone(aa_type):
    """The backbone in eval mode, its outputs as a tuple (see `Flat`)."""
    cfg = load_config(QUICK_INSTANCE, ["MODEL.ANTIALIAS.TYPE", aa_type, "MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_backbone(cfg).eval()
    with torch.no_grad():  # BN statistics that are not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    # In eval mode as a whole: the ONNX exporter restores the outer module's mode after
    # exporting, and a new module starts in training mode.
    return Flat(model).eval()


class Flat(torch.nn.Module):
    """The backbone's dict of feature maps as a tuple, in its output order."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        features = self.model(x)
        return tuple(features[name] for name in self.model.output_shape())


def inputs():
    return [torch.randn(1, 3, *size) for size in SIZES]


def assert_outputs_close(got, want, tolerance):
    assert len(got) == len(want) == 5
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.as_tensor(g), w, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("aa_type", AA_TYPES)
def test_backbone_compiles_in_one_graph(aa_type):
    model = backbone(aa_type)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        x = inputs()[0]
        assert_outputs_close(compiled(x), model(x), 1e-5)


def _dynamic_sizes():
    blocks_h, blocks_w = Dim("blocks_h", min=3, max=64), Dim("blocks_w", min=3, max=64)
    return {"x": {2: 32 * blocks_h, 3: 32 * blocks_w}}


@pytest.mark.parametrize("aa_type", AA_TYPES)
def test_backbone_exports_with_dynamic_size(aa_type):
    model = backbone(aa_type)
    first, second = inputs()
    exported = torch.export.export(model, (first,), dynamic_shapes=_dynamic_sizes()).module()
    with torch.no_grad():
        for x in (first, second):
            assert_outputs_close(exported(x), model(x), 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
@pytest.mark.parametrize("aa_type", ["none", "lpf", "pasa"])
def test_backbone_onnx_in_onnxruntime(aa_type, dynamo, tmp_path):
    model = backbone(aa_type)
    first, second = inputs()
    path = str(tmp_path / "backbone.onnx")
    if dynamo:
        options = {"dynamic_shapes": _dynamic_sizes()}
    else:
        options = {"input_names": ["x"], "dynamic_axes": {"x": {2: "height", 3: "width"}}}
    with torch.no_grad():
        torch.onnx.export(model, (first,), path, dynamo=dynamo, **options)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    with torch.no_grad():
        for x in (first, second):
            assert_outputs_close(session.run(None, {name: x.numpy()}), model(x), 1e-4)
