"""pasa_det's config keys (`defaults`), the one check of their values (`checks`), and
reading a config file with overrides into a checked config (`loading`)."""

from .checks import ANTIALIAS_TYPES, ConfigError, check_antialias_config, check_pasa_config
from .defaults import add_pasa_config
from .loading import load_config

__all__ = [
    "ANTIALIAS_TYPES",
    "ConfigError",
    "add_pasa_config",
    "check_antialias_config",
    "check_pasa_config",
    "load_config",
]
