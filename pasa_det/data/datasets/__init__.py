"""Dataset registration; importing registers the embedded synthetic sets under
`$DETECTRON2_DATASETS` (default `./datasets`)."""
import os

from .synthetic import register_synthetic

register_synthetic(os.getenv("DETECTRON2_DATASETS", "datasets"))
