"""Dataset registration; importing registers the embedded synthetic sets under
`$DETECTRON2_DATASETS` (default `./datasets`), and lets detectron2's Cityscapes loaders
find cityscapesscripts on detectron2 main too."""

import os

from pasa_det.detectron2_versions import serve_cityscapes_scripts_for_detectron2_main

from .synthetic import register_synthetic

serve_cityscapes_scripts_for_detectron2_main()
register_synthetic(os.getenv("DETECTRON2_DATASETS", "datasets"))
