"""Reading `--config-file` and trailing `KEY VALUE` overrides into a checked config,
with errors that name the file or override, the key, and what to change."""

import difflib
import logging
import os
import re

import torch
import yaml
from detectron2.config import CfgNode as CN

from .checks import ConfigError, check_pasa_config
from .defaults import add_pasa_config


def _leaf_keys(cfg: CN, prefix: str = ""):
    for key, value in cfg.items():
        if isinstance(value, CN):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _explain(cfg: CN, error: Exception, where: str) -> ConfigError:
    """yacs' error for a merge from `where`, with the closest valid key for an unknown one."""
    message = str(error.args[0]) if error.args else str(error)
    unknown = re.match(r"Non-existent (?:config )?key: (\S+)", message)
    if unknown:
        key = unknown.group(1)
        close = difflib.get_close_matches(key, list(_leaf_keys(cfg)), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return ConfigError(f"{where}: unknown config key {key}{hint}")
    return ConfigError(f"{where}: {message}")


def _check_bases(config_file: str) -> None:
    """Every `_BASE_` of the chain exists: detectron2 would fail on a missing one
    without naming the config that referenced it."""
    seen, path = set(), config_file
    while path not in seen:
        seen.add(path)
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: no such config file")
        try:
            with open(path) as f:
                content = yaml.safe_load(f) or {}
        except yaml.constructor.ConstructorError:  # python tags: detectron2 reads these itself
            return
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        base = content.get("_BASE_") if isinstance(content, dict) else None
        if not base:
            return
        resolved = os.path.expanduser(base)
        if resolved.startswith(("http://", "https://")):
            return
        resolved = os.path.join(os.path.dirname(path), resolved)
        if not os.path.isfile(resolved):
            raise ConfigError(
                f"{path}: its _BASE_ {base!r} does not exist (looked for {os.path.normpath(resolved)})"
            )
        path = resolved


def load_config(config_file: str, opts=()) -> CN:
    """detectron2's default config with pasa_det's and DeepLab's keys, merged with
    `config_file` and `KEY VALUE` overrides, then checked. Without CUDA the model runs
    on the CPU. Raises ConfigError naming the file or override and the key on bad input."""
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config

    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_pasa_config(cfg)
    _check_bases(config_file)
    try:
        cfg.merge_from_file(config_file)
    except (KeyError, AssertionError, ValueError) as e:
        raise _explain(cfg, e, config_file) from None
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError) as e:
        raise _explain(cfg, e, "command-line overrides") from None
    check_pasa_config(cfg)
    if cfg.MODEL.DEVICE != "cpu" and not torch.cuda.is_available():
        # detectron2's default "cuda" falls back quietly; a chosen device gets a warning.
        level = logging.INFO if cfg.MODEL.DEVICE == "cuda" else logging.WARNING
        logging.getLogger(__name__).log(
            level, f"MODEL.DEVICE {cfg.MODEL.DEVICE!r} but no GPU is available: using the CPU"
        )
        cfg.MODEL.DEVICE = "cpu"
    return cfg
