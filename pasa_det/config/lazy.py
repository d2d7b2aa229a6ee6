"""Reading a LazyConfig (`--config-file x.py`) and its `key=value` overrides, with errors
that name the file or the key: detectron2 adds a misspelt override as a new key, silently."""

import difflib
import inspect

from detectron2.config import LazyConfig
from detectron2.utils.registry import locate
from omegaconf import OmegaConf

from .checks import ConfigError

# What tools/lazyconfig_train_net.py reads (detectron2's configs/common/train.py keys).
REQUIRED = (
    "model",
    "optimizer",
    "lr_multiplier",
    "dataloader.train",
    "train.output_dir",
    "train.init_checkpoint",
    "train.max_iter",
    "train.device",
    "train.amp.enabled",
    "train.checkpointer.period",
    "train.eval_period",
    "train.log_period",
    "train.ddp",
)
_MISSING = object()


def _keys(node, prefix=""):
    for key in node:
        value = node[key] if OmegaConf.is_dict(node) else None
        yield f"{prefix}{key}"
        if OmegaConf.is_dict(value):
            yield from _keys(value, f"{prefix}{key}.")


def _settable(cfg, key: str) -> bool:
    """Whether `key` is in `cfg`, or names an argument of the LazyCall it would go into."""
    if OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False) is not _MISSING:
        return True
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else None
    target = node.get("_target_", None) if OmegaConf.is_dict(node) else None
    if target is None:
        return False
    try:
        parameters = inspect.signature(locate(target) if isinstance(target, str) else target)
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return True
    kinds = {p.kind for p in parameters.parameters.values()}
    return name in parameters.parameters or inspect.Parameter.VAR_KEYWORD in kinds


def load_lazy_config(config_file: str, overrides=()):
    """The LazyConfig of `config_file` with `overrides` ("key=value") applied; every
    overridden key must exist or be an argument of the call it goes into, and every key
    the training tool reads must be there."""
    try:
        cfg = LazyConfig.load(config_file)
    except (OSError, SyntaxError, ImportError, AttributeError, KeyError, ValueError) as e:
        raise ConfigError(f"{config_file}: cannot load it as a LazyConfig: {e!r}") from None
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if "=" not in override:
            raise ConfigError(f"override {override!r}: write it as key=value")
        if not _settable(cfg, key):
            close = difflib.get_close_matches(key, list(_keys(cfg)), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"override {override!r}: {config_file} has no key {key}{hint}")
    try:
        LazyConfig.apply_overrides(cfg, list(overrides))
    except Exception as e:  # hydra's parser and OmegaConf raise their own types
        raise ConfigError(f"overrides {list(overrides)}: {e}") from None
    missing = [k for k in REQUIRED if OmegaConf.select(cfg, k, default=_MISSING) is _MISSING]
    if missing:
        raise ConfigError(
            f"{config_file} lacks {', '.join(missing)}: start from configs/common/train.py "
            "(detectron2's keys) and give the model, optimizer, lr_multiplier and dataloader"
        )
    return cfg
