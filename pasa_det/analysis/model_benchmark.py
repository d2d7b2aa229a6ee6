"""Parameters, FLOPs and time of whole models with each anti-aliasing type,
behind `tools/benchmark_model.py`.

FLOPs are fvcore's (one multiply-add counts one), with handles for what the
filters add that fvcore skips by default: PASA's weighted sum (traced as one
`mul` and k*k - 1 `addcmul`s: k*k multiply-adds per output) and the softmax.
"""

from pathlib import Path
from typing import Dict, List

import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage
from fvcore.nn import FlopCountAnalysis
from torch import nn

from pasa_det.config import ANTIALIAS_TYPES, load_config

from .benchmark import interleaved_medians

# Config of each model per filter type, relative to the repository's configs/.
MODELS = {
    "mask_rcnn_R_50_FPN": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_{}.yaml",
    "deeplab_v3_plus_R_103": "Cityscapes-SemanticSegmentation/deeplab_v3_plus_R_103_os16_mg124_poly_90k_bs16_{}.yaml",
}


def _elementwise_flops(inputs, outputs):
    """One per output element; none for 0-dim results, which are the tracer's arithmetic
    on sizes (traced as tensors), not work on data."""
    sizes = outputs[0].type().sizes()
    return torch.Size(sizes).numel() if sizes else 0


FLOP_HANDLES = {
    "aten::mul": _elementwise_flops,
    "aten::addcmul": _elementwise_flops,
    "aten::softmax": _elementwise_flops,
    "aten::pad": None,  # reflect padding is a copy: no arithmetic
    "aten::unflatten": None,  # PASA's channel groups: a view
}


# Untrained heads would otherwise do a different amount of work per model: random
# box offsets throw most boxes out of the image, NMS keeps a varying number, and
# the IoU matching of random proposals sets how many ROIs the (costly) mask head
# trains on. `build` also zeroes the box-offset predictors: proposals are anchors.
FIXED_HEAD_WORKLOAD = [
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    0.0,  # every box is a detection ...
    "MODEL.ROI_HEADS.NMS_THRESH_TEST",
    1.0,  # ... none suppressed: DETECTIONS_PER_IMAGE
    "MODEL.RPN.NMS_THRESH",
    1.0,  # the RPN keeps its POST_NMS_TOPK proposals
    # Every proposal overlaps the whole-image ground-truth box of `synthetic_inputs`,
    # so all are foreground: the mask head trains on POSITIVE_FRACTION *
    # BATCH_SIZE_PER_IMAGE ROIs per image.
    "MODEL.ROI_HEADS.IOU_THRESHOLDS",
    [1e-6],
]


def build(model_key: str, aa_type: str, device: str, height: int, width: int, configs: Path):
    """Model without pretrained weights, whose heads do the same work whatever
    the filter (`FIXED_HEAD_WORKLOAD`), so time and FLOP ratios measure the
    backbones. Off CUDA, SyncBN becomes BN (it needs a process group);
    DeepLab's ASPP pooling is sized for the input. `configs` is the configs/ folder."""
    opts = ["MODEL.DEVICE", device, "MODEL.WEIGHTS", ""]
    if "mask_rcnn" in model_key:
        opts += FIXED_HEAD_WORKLOAD
    if not device.startswith("cuda"):
        opts += ["MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]
    if "deeplab" in model_key:
        opts += ["INPUT.CROP.SIZE", (height, width)]
    cfg = load_config(str(configs / MODELS[model_key].format(aa_type)), opts)
    model = build_model(cfg)
    if "mask_rcnn" in model_key:  # no box offsets: proposals are anchors, detections proposals
        with torch.no_grad():
            for layer in (
                model.proposal_generator.rpn_head.anchor_deltas,
                model.roi_heads.box_predictor.bbox_pred,
            ):
                layer.weight.zero_()
                layer.bias.zero_()
    return model


def synthetic_inputs(
    model_key: str, batch: int, height: int, width: int, device: str, seed: int = 0
) -> List[dict]:
    """Random images with a few random boxes and masks (instance models) or a
    random label map (semantic models)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(batch):
        image = torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)
        item = {"image": image.to(device), "height": height, "width": width}
        if "deeplab" in model_key:
            item["sem_seg"] = torch.randint(0, 19, (height, width), generator=gen).to(device)
        else:
            n = 4
            xy = torch.rand(n, 2, generator=gen) * torch.tensor([width / 2, height / 2])
            wh = (torch.rand(n, 2, generator=gen) * 0.4 + 0.1) * torch.tensor([width, height])
            boxes = torch.cat([xy, xy + wh], dim=1)
            boxes[0] = torch.tensor(
                [0.0, 0.0, width, height]
            )  # overlaps every proposal (FIXED_HEAD_WORKLOAD)
            masks = torch.zeros(n, height, width, dtype=torch.bool)
            for mask, (x0, y0, x1, y1) in zip(masks, boxes.round().long().tolist()):
                mask[y0:y1, x0:x1] = True
            instances = Instances((height, width))
            instances.gt_boxes = Boxes(boxes)
            instances.gt_classes = torch.randint(0, 80, (n,), generator=gen)
            instances.gt_masks = BitMasks(masks)
            item["instances"] = instances.to(device)
        inputs.append(item)
    return inputs


def _tensors(outputs):
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, Instances):
        outputs = outputs.get_fields()
    if isinstance(outputs, Boxes):
        outputs = outputs.tensor
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return [t for o in outputs for t in _tensors(o)]
    return []


class _ImageToTensors(nn.Module):
    """The model on one image tensor, its outputs flattened to tensors: the
    signature fvcore's tracer needs (detectron2's own adapter imports caffe2)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return tuple(_tensors(self.model([{"image": image}])))


def _flop_analysis(module: nn.Module, inputs: tuple) -> FlopCountAnalysis:
    """fvcore's analysis of `module(*inputs)` with PASA's ops counted, quietly."""
    analysis = FlopCountAnalysis(module, inputs)
    for name, handle in FLOP_HANDLES.items():
        analysis.set_op_handle(name, handle)
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def count_flops(model, inputs) -> dict:
    """Inference FLOPs per image and the ops fvcore could not count."""
    model.eval()
    analysis = _flop_analysis(_ImageToTensors(model), (inputs[0]["image"],))
    with torch.no_grad():
        total = analysis.total()
    return {"flops": total, "unsupported_ops": dict(analysis.unsupported_ops())}


def count_backbone_flops(model, inputs) -> float:
    """Inference FLOPs of the backbone alone on the first image, normalised and padded as
    the model does it: what the anti-aliasing changes, free of the heads' work, which in a
    trained detector varies with the number of detections."""
    model.eval()
    image = (inputs[0]["image"].to(model.pixel_mean.device) - model.pixel_mean) / model.pixel_std
    images = ImageList.from_tensors([image], model.backbone.size_divisibility)
    with torch.no_grad():
        return _flop_analysis(model.backbone, (images.tensor,)).total()


def time_inference_and_training(
    models: Dict[str, nn.Module], infer_inputs, train_inputs, repeats: int, device: str
):
    """Median seconds of one inference on `infer_inputs` and of one training forward and
    backward on `train_inputs` for each model, timed interleaved."""

    def infer(model):
        def run():
            model.eval()
            with torch.no_grad():
                model(infer_inputs)

        return run

    def train(model):
        def run():
            model.train()
            model.zero_grad(set_to_none=True)
            with EventStorage():
                sum(model(train_inputs).values()).backward()

        return run

    infer_times = interleaved_medians(
        {name: infer(m) for name, m in models.items()}, repeats, device
    )
    train_times = interleaved_medians(
        {name: train(m) for name, m in models.items()}, repeats, device
    )
    return infer_times, train_times


def benchmark_models(
    model_key: str, batch: int, height: int, width: int, repeats: int, device: str, configs: Path
) -> Dict[str, dict]:
    """Params, FLOPs, inference time per image and training time per iteration
    of `model_key` for every anti-aliasing type, timed interleaved."""
    models = {aa: build(model_key, aa, device, height, width, configs) for aa in ANTIALIAS_TYPES}
    inputs = synthetic_inputs(model_key, batch, height, width, device)
    results = {
        aa: {"params": sum(p.numel() for p in m.parameters()), **count_flops(m, inputs)}
        for aa, m in models.items()
    }

    infer_times, train_times = time_inference_and_training(models, inputs, inputs, repeats, device)
    for aa in ANTIALIAS_TYPES:
        results[aa]["inference_s_per_image"] = infer_times[aa] / batch
        results[aa]["train_s_per_iter"] = train_times[aa]
    for aa in ANTIALIAS_TYPES:
        for key in ("params", "flops", "inference_s_per_image", "train_s_per_iter"):
            results[aa][f"{key}_vs_none"] = results[aa][key] / results["none"][key]
    return results
