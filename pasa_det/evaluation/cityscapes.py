"""Cityscapes instance AP through detectron2's evaluator, without its litter."""
import os
import shutil

from detectron2.evaluation import CityscapesInstanceEvaluator as _CityscapesInstanceEvaluator
from detectron2.utils import comm


class CityscapesInstanceEvaluator(_CityscapesInstanceEvaluator):
    """detectron2's evaluator (needs `pip install cityscapesscripts`). cityscapesscripts
    writes its per-instance matches to `matches.json` in the working directory; this
    moves that file into `output_dir` (or removes it when there is none)."""

    def __init__(self, dataset_name, output_dir=None):
        super().__init__(dataset_name)
        self._output_dir = output_dir

    def evaluate(self):
        existed = os.path.exists("matches.json")
        try:
            return super().evaluate()
        finally:
            if comm.is_main_process() and not existed and os.path.exists("matches.json"):
                if self._output_dir:
                    os.makedirs(self._output_dir, exist_ok=True)
                    shutil.move("matches.json", os.path.join(self._output_dir, "cityscapes_matches.json"))
                else:
                    os.remove("matches.json")
