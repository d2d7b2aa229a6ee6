#!/usr/bin/env python
"""Make Cityscapes' *_labelTrainIds.png (semantic segmentation labels) with cityscapesscripts.

pip install cityscapesscripts
python datasets/prepare_cityscapes.py [CITYSCAPES_ROOT]   # default $DETECTRON2_DATASETS/cityscapes
"""

import os
import subprocess
import sys


def main():
    root = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "cityscapes")
    )
    if not os.path.isdir(os.path.join(root, "gtFine")):
        sys.exit(
            f"error: {root}/gtFine does not exist: unpack gtFine_trainvaltest.zip there first (see datasets/README.md)"
        )
    try:
        import cityscapesscripts  # noqa: F401
    except ImportError:
        sys.exit("error: cityscapesscripts is not installed: pip install cityscapesscripts")
    env = dict(os.environ, CITYSCAPES_DATASET=os.path.abspath(root))
    sys.exit(
        subprocess.call(
            [sys.executable, "-m", "cityscapesscripts.preparation.createTrainIdLabelImgs"], env=env
        )
    )


if __name__ == "__main__":
    main()
