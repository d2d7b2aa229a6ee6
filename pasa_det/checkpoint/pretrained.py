"""Convert torchvision-layout ImageNet ResNets (the PASA authors' and plain
torchvision checkpoints) into detectron2 backbone checkpoints."""

import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Dict

import torch

from pasa_det.layers import binomial_kernel

FORMATS = ("seed", "torchvision")

# Module paths (key without the parameter name) in torchvision layout -> detectron2 ResNet.
_STEM = {
    "conv1": "stem.conv1",
    "bn1": "stem.conv1.norm",
    "maxpool.1": "stem.aa",  # LPF: the filter buffer sits here
    "maxpool.1.conv": "stem.aa.conv",
    "maxpool.1.bn": "stem.aa.norm",
}
_BLOCK = {
    "conv1": "conv1",
    "bn1": "conv1.norm",
    "conv2": "conv2",
    "bn2": "conv2.norm",
    "conv3": "conv3",
    "bn3": "conv3.norm",
    # Basic block (R-18/34): the filter runs before conv2.
    "conv2.0": "aa",
    "conv2.0.conv": "aa.conv",
    "conv2.0.bn": "aa.norm",
    "conv2.1": "conv2",
    # Bottleneck (R-50+): the filter runs before conv3.
    "conv3.0": "aa",
    "conv3.0.conv": "aa.conv",
    "conv3.0.bn": "aa.norm",
    "conv3.1": "conv3",
}
_SHORTCUT = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}
_SHORTCUT_FILTERED = {
    "downsample.0": "shortcut_aa",
    "downsample.0.conv": "shortcut_aa.conv",
    "downsample.0.bn": "shortcut_aa.norm",
    "downsample.1": "shortcut",
    "downsample.2": "shortcut.norm",
}
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.(.+)")
_BOTTLENECK_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
_BASIC_DEPTHS = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34}


class CheckpointFormatError(ValueError):
    """The file is not an ImageNet ResNet checkpoint in a layout we know."""


@dataclass
class Conversion:
    model: Dict[str, torch.Tensor] = field(default_factory=dict)
    mapped: Dict[str, str] = field(default_factory=dict)  # source key -> detectron2 key
    dropped: Dict[str, str] = field(default_factory=dict)  # source key -> why
    suggested_config: Dict[str, object] = field(default_factory=dict)


def load_source(path: str, fmt: str = None) -> Dict[str, torch.Tensor]:
    """Read `path` (weights only) and return its flat state dict, without the
    `module.` prefix of DataParallel checkpoints."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointFormatError(
            f"{path}: cannot be read as a torch checkpoint with weights_only=True ({e}). "
            "It may be truncated, not a torch file, or hold pickled objects beyond tensors; "
            "re-save just its state_dict from a trusted environment."
        ) from None
    if fmt is None:
        fmt = _guess_format(obj)
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    state = obj.get("state_dict") if fmt == "seed" and isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise CheckpointFormatError(
            f"{path}: expected a {'dict with a state_dict' if fmt == 'seed' else 'state dict'} "
            f"for --format {fmt}, found {type(obj).__name__}"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointFormatError(
                f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor"
            )
    return _without_module_prefix(state)


def _guess_format(obj) -> str:
    """The authors' files hold {'state_dict': …} ("seed"); torchvision's are flat."""
    return (
        "seed"
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict)
        else "torchvision"
    )


def _without_module_prefix(state: dict) -> dict:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def torchvision_layout(obj):
    """The --format of tools/convert_pretrained.py that `obj` (a loaded checkpoint) is in,
    "seed" or "torchvision", or None when it is not a torchvision-layout ResNet: every key
    one the converter maps or drops, and some of layer1-4. Lets MODEL.WEIGHTS refuse such
    files, whose names match no detectron2 model, instead of loading nothing."""
    fmt = _guess_format(obj)
    state = obj.get("state_dict") if fmt == "seed" else obj
    if not isinstance(state, dict) or not state:
        return None
    keys = set(_without_module_prefix(state))
    modules = [k.rpartition(".")[0] for k in keys]
    if not any(_BLOCK_KEY.fullmatch(m) for m in modules):
        return None
    known = all(m == "fc" or _target_module(m, keys) is not None for m in modules)
    return fmt if known else None


def _target_module(module: str, state_keys) -> str:
    """The detectron2 module path for a torchvision module path, or None."""
    if module in _STEM:
        return _STEM[module]
    match = _BLOCK_KEY.fullmatch(module)
    if not match:
        return None
    layer, block, rest = match.groups()
    prefix = f"layer{layer}.{block}."
    filtered_shortcut = f"{prefix}downsample.2.weight" in state_keys
    table = dict(_BLOCK, **(_SHORTCUT_FILTERED if filtered_shortcut else _SHORTCUT))
    target = table.get(rest)
    return None if target is None else f"res{int(layer) + 1}.{block}.{target}"


def _check_binomial(key: str, value: torch.Tensor, path: str) -> None:
    size = value.shape[-1]
    expected = binomial_kernel(size).expand_as(value)
    if value.dim() != 4 or not torch.allclose(value.float(), expected, atol=1e-6):
        raise CheckpointFormatError(
            f"{path}: {key!r} is not the normalised {size}x{size} binomial filter of an LPF model"
        )


def _suggest_config(model: Dict[str, torch.Tensor], blocks_per_stage) -> Dict[str, object]:
    """The config values this checkpoint needs, as far as its shapes tell."""
    config = {}
    if "res2.0.conv3.weight" in model:
        depth = _BOTTLENECK_DEPTHS.get(blocks_per_stage)
    else:
        depth = _BASIC_DEPTHS.get(blocks_per_stage)
        config["MODEL.RESNETS.RES2_OUT_CHANNELS"] = 64
    if depth is not None:
        config["MODEL.RESNETS.DEPTH"] = depth
    filters = [k for k in model if k.endswith("aa.conv.weight")]
    if filters:
        taps, _, k, _ = model[filters[0]].shape
        config.update(
            {
                "MODEL.ANTIALIAS.TYPE": "pasa",
                "MODEL.ANTIALIAS.KERNEL_SIZE": k,
                "MODEL.ANTIALIAS.GROUP": taps // (k * k),
            }
        )
    return config


def convert_resnet(state: Dict[str, torch.Tensor], path: str = "<state dict>") -> Conversion:
    """Rename a torchvision-layout ResNet state dict to detectron2's ResNet names."""
    result = Conversion()
    lpf_sizes = set()
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module == "fc":
            result.dropped[key] = "ImageNet classifier"
            continue
        if param == "num_batches_tracked":
            result.dropped[key] = "BN step counter (detectron2 checkpoints carry none)"
            continue
        target = _target_module(module, state)
        if target is None:
            raise CheckpointFormatError(
                f"{path}: key {key!r} is not part of a torchvision-layout ResNet "
                "(expected conv1/bn1, maxpool.1, layer1-4 blocks and fc). "
                "Is this a detectron2 checkpoint? Those load through MODEL.WEIGHTS directly."
            )
        if param == "filt":
            _check_binomial(key, value, path)
            lpf_sizes.add(value.shape[-1])
            result.dropped[key] = "fixed LPF binomial filter (rebuilt by the model)"
            continue
        result.mapped[key] = f"{target}.{param}"
        result.model[f"{target}.{param}"] = value.detach().clone()
    if not result.mapped:
        raise CheckpointFormatError(f"{path}: holds no ResNet weights")
    blocks_per_stage = tuple(
        len({k.split(".")[1] for k in result.model if k.startswith(f"res{s}.")})
        for s in range(2, 6)
    )
    result.suggested_config = _suggest_config(result.model, blocks_per_stage)
    if lpf_sizes:
        result.suggested_config.update(
            {"MODEL.ANTIALIAS.TYPE": "lpf", "MODEL.ANTIALIAS.KERNEL_SIZE": max(lpf_sizes)}
        )
    return result


def save_detectron2_checkpoint(model: Dict[str, torch.Tensor], path: str) -> None:
    """Write `model` as detectron2 writes ImageNet backbones: ResNet-relative
    keys with `matching_heuristics`, so it loads into a bare backbone and into a
    whole model through MODEL.WEIGHTS. `.pkl` gets numpy arrays, else torch."""
    checkpoint = {"__author__": "pasa_det.convert_pretrained", "matching_heuristics": True}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".pkl"):
        checkpoint["model"] = {k: v.numpy() for k, v in model.items()}
        with open(path, "wb") as f:
            pickle.dump(checkpoint, f)
    else:
        checkpoint["model"] = model
        torch.save(checkpoint, path)
