"""Whether a config can continue the run whose checkpoints are in OUTPUT_DIR.

A config whose model has other parameters, or whose optimizer groups them otherwise,
cannot load the run's checkpoint: detectron2 finds out while loading, after the config
has overwritten OUTPUT_DIR/config.yaml, the record of the run, and PyTorch's error names
no key. Here both configs' models and optimizers are built and compared before anything
is written, and the keys that make the difference are named with both values.
"""

import os

import torch

# Top-level config groups that build neither the model nor its optimizer.
_NOT_STRUCTURAL = ("DATASETS.", "DATALOADER.", "TEST.", "OUTPUT_DIR", "SEED", "VIS_PERIOD")
_NOT_STRUCTURAL += ("CUDNN_BENCHMARK", "GLOBAL.", "VERSION", "MODEL.WEIGHTS", "MODEL.DEVICE")
# Candidate keys tried one at a time; with more differences, all are named.
_MAX_SINGLE_TRIES = 16


def _leaves(cfg, prefix=""):
    """(dotted key, value) of every leaf; lists and tuples alike (a dumped config's)."""
    for key, value in cfg.items():
        if hasattr(value, "items"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", tuple(value) if isinstance(value, list) else value


def _set(cfg, key: str, value) -> None:
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value


def _structure(cfg, build_model, build_optimizer):
    """The parameter and buffer names and shapes of `cfg`'s model, and the sizes of its
    optimizer's parameter groups: what loading a checkpoint of it requires."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    rng = torch.random.get_rng_state()
    try:
        model = build_model(cfg)
        groups = [len(g["params"]) for g in build_optimizer(cfg, model).param_groups]
    finally:
        torch.random.set_rng_state(rng)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}, groups


def incompatible_keys(run_cfg, cfg, build_model, build_optimizer):
    """[(key, value in cfg, value in run_cfg)] of the keys that keep `cfg` from continuing
    the run made with `run_cfg`; [] when it can."""
    theirs = dict(_leaves(run_cfg))
    differing = [
        (k, v, theirs.get(k))
        for k, v in _leaves(cfg)
        if theirs.get(k) != v and not k.startswith(_NOT_STRUCTURAL)
    ]
    if not differing:
        return []
    reference = _structure(run_cfg, build_model, build_optimizer)
    if _structure(cfg, build_model, build_optimizer) == reference:
        return []
    if len(differing) > _MAX_SINGLE_TRIES:
        return differing
    culprits = []
    for key, value, _ in differing:
        one_change = run_cfg.clone()
        one_change.defrost()
        _set(one_change, key, value)
        try:
            changed = _structure(one_change, build_model, build_optimizer) != reference
        except Exception:  # noqa: BLE001 - a key that does not build alone is a culprit too
            changed = True
        if changed:
            culprits.append((key, value, theirs[key]))
    return culprits or differing


def describe(culprits, output_dir: str) -> str:
    run_config = os.path.join(output_dir, "config.yaml")
    keys = "; ".join(f"{k} is {v!r} here but {r!r} in the run" for k, v, r in culprits)
    return (
        f"--resume cannot continue the run in {output_dir} with this config: {keys} "
        f"({run_config}), which changes the model's parameters or the optimizer's parameter "
        f"groups. Resume with the run's config (--config-file {run_config}) or start a new run "
        "in another OUTPUT_DIR; nothing in the folder was changed"
    )
