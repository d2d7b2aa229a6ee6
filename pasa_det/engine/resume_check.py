"""Whether a config can continue the run whose checkpoints are in its output folder.

A config whose model has other parameters, or whose optimizer groups them otherwise,
cannot load the run's checkpoint: detectron2 finds out while loading, after the config
has overwritten <output>/config.yaml, the record of the run, and PyTorch's error names
no key. Here both configs' models and optimizers are built and compared before anything
is written, and the keys that make the difference are named with both values. Both
config systems: `yacs_structure` and `lazy_structure` build what is compared.
"""

import copy
import os

import torch
from detectron2.config import instantiate
from detectron2.utils.registry import locate
from omegaconf import OmegaConf

# Config keys that build neither the model nor its optimizer (prefixes), per config system.
YACS_NOT_STRUCTURAL = ("DATASETS.", "DATALOADER.", "TEST.", "OUTPUT_DIR", "SEED", "VIS_PERIOD")
YACS_NOT_STRUCTURAL += ("CUDNN_BENCHMARK", "GLOBAL.", "VERSION", "MODEL.WEIGHTS", "MODEL.DEVICE")
LAZY_NOT_STRUCTURAL = ("dataloader.", "train.", "lr_multiplier.")
# Candidate keys tried one at a time; with more differences, all are named.
_MAX_SINGLE_TRIES = 16


def _leaves(cfg, prefix=""):
    """(dotted key, value) of every leaf; sequences as tuples (a dumped config's are lists)
    and LazyCall targets as the objects they name (a saved LazyConfig's are strings). A
    LazyConfig's interpolations follow from the key they name, and are left out."""
    for key, value in cfg.items():
        if OmegaConf.is_config(cfg) and OmegaConf.is_interpolation(cfg, key):
            continue
        if hasattr(value, "items"):
            yield from _leaves(value, f"{prefix}{key}.")
        elif key == "_target_" and isinstance(value, str):
            yield f"{prefix}{key}", locate(value)
        elif isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
            yield f"{prefix}{key}", tuple(value)
        else:
            yield f"{prefix}{key}", value


def _with_value(cfg, key: str, value):
    """A copy of `cfg` with `key` set to `value`."""
    if hasattr(cfg, "clone"):  # yacs
        cfg = cfg.clone()
        cfg.defrost()
    else:
        cfg = copy.deepcopy(cfg)
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return cfg


def _without_rng_draws(build):
    """`build()` with torch's random state as it was before (initialisation draws)."""
    rng = torch.random.get_rng_state()
    try:
        return build()
    finally:
        torch.random.set_rng_state(rng)


def _summary(model, optimizer):
    """The parameter and buffer names and shapes of a model and the sizes of its
    optimizer's parameter groups: what loading a checkpoint of them requires."""
    groups = [len(g["params"]) for g in optimizer.param_groups]
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}, groups


def yacs_structure(build_model, build_optimizer):
    """What a yacs config's checkpoint holds, from the trainer's builders."""

    def structure(cfg):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE = "cpu"
        cfg.MODEL.WEIGHTS = ""

        def build():
            model = build_model(cfg)
            return _summary(model, build_optimizer(cfg, model))

        return _without_rng_draws(build)

    return structure


def lazy_structure(cfg):
    """What a LazyConfig's checkpoint holds: its `model` and `optimizer` instantiated."""

    def build():
        model = instantiate(cfg.model)
        optimizer = copy.deepcopy(cfg.optimizer)
        optimizer.params.model = model
        return _summary(model, instantiate(optimizer))

    return _without_rng_draws(build)


def incompatible_keys(run_cfg, cfg, structure, not_structural=YACS_NOT_STRUCTURAL):
    """[(key, value in cfg, value in run_cfg)] of the keys that keep `cfg` from continuing
    the run made with `run_cfg`; [] when it can. `structure(cfg)`: what a checkpoint of
    `cfg` holds; keys starting with `not_structural` are not compared."""
    theirs = dict(_leaves(run_cfg))
    differing = [
        (k, v, theirs.get(k))
        for k, v in _leaves(cfg)
        if theirs.get(k) != v and not k.startswith(not_structural)
    ]
    if not differing:
        return []
    reference = structure(run_cfg)
    if structure(cfg) == reference:
        return []
    if len(differing) > _MAX_SINGLE_TRIES:
        return differing
    culprits = []
    for key, value, _ in differing:
        try:
            changed = structure(_with_value(run_cfg, key, value)) != reference
        except Exception:  # noqa: BLE001 - a key that does not build alone is a culprit too
            changed = True
        if changed:
            culprits.append((key, value, theirs.get(key)))
    return culprits or differing


def describe(culprits, output_dir: str, output_key: str = "OUTPUT_DIR") -> str:
    run_config = os.path.join(output_dir, "config.yaml")
    keys = "; ".join(f"{k} is {_shown(v)} here but {_shown(r)} in the run" for k, v, r in culprits)
    return (
        f"--resume cannot continue the run in {output_dir} with this config: {keys} "
        f"({run_config}), which changes the model's parameters or the optimizer's parameter "
        f"groups. Resume with the run's config (--config-file {run_config}) or start a new run "
        f"in another {output_key}; nothing in the folder was changed"
    )


def _shown(value) -> str:
    return getattr(value, "__qualname__", None) or repr(value)
