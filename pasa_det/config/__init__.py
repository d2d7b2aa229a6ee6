"""pasa_det's config keys (`defaults`), what anti-aliases a backbone as plain values
(`antialias`), the one check of the keys' values (`checks`), and reading a config file with
overrides into a checked config (`loading`)."""

from .antialias import AntiAlias, AntiAliasError
from .checks import ANTIALIAS_TYPES, ConfigError, check_antialias_config, check_pasa_config
from .defaults import add_pasa_config
from .loading import load_config

__all__ = [
    "ANTIALIAS_TYPES",
    "AntiAlias",
    "AntiAliasError",
    "ConfigError",
    "add_pasa_config",
    "check_antialias_config",
    "check_pasa_config",
    "load_config",
]
