"""Cityscapes instance AP, scored by cityscapesscripts, on detectron2 0.6 and main, NumPy 1 and 2."""

import glob
import json
import os

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import CityscapesInstanceEvaluator as _CityscapesInstanceEvaluator
from detectron2.utils import comm

from pasa_det.detectron2_versions import (
    cityscapes_prediction_dir,
    remove_cityscapes_prediction_dir,
    serve_cityscapes_scripts_for_detectron2_main,
)


def _plain(value):
    """json's fallback for NumPy scalars (NumPy 2's count_nonzero returns int64, not int)."""
    return value.item() if hasattr(value, "item") else value.__dict__


class CityscapesInstanceEvaluator(_CityscapesInstanceEvaluator):
    """detectron2's evaluator (needs `pip install cityscapesscripts`; it writes each
    prediction as cityscapesscripts reads them) with its own last step:
    cityscapesscripts' `evaluateImgLists` writes its per-instance matches to
    `matches.json` in the working directory, with a JSON encoder that fails on NumPy 2.
    This runs the same steps, writes the matches to `output_dir/cityscapes_matches.json`
    (nowhere without `output_dir`), and imports cityscapesscripts by its own name."""

    def __init__(self, dataset_name, output_dir=None):
        serve_cityscapes_scripts_for_detectron2_main()  # process() imports it under main's name
        super().__init__(dataset_name)
        self.gt_dir = MetadataCatalog.get(dataset_name).gt_dir
        self.output_dir = output_dir

    def evaluate(self):
        comm.synchronize()
        if comm.get_rank() > 0:
            return None
        if not hasattr(np, "in1d"):
            raise RuntimeError(
                f"cityscapesscripts (the Cityscapes instance scorer) calls np.in1d, which NumPy {np.__version__} "
                "no longer has: install NumPy < 2.4 (pip install 'numpy<2.4'; pasa_det's [cityscapes] extra does)"
            )
        from cityscapesscripts.evaluation import (
            evalInstanceLevelSemanticLabeling as cityscapes_eval,
        )

        args = cityscapes_eval.args  # the module's settings, as detectron2 sets them
        predictions_dir = cityscapes_prediction_dir(self)
        args.predictionPath = os.path.abspath(predictions_dir)
        args.predictionWalk = None
        args.JSONOutput = False
        args.colorized = False
        args.gtInstancesFile = os.path.join(predictions_dir, "gtInstances.json")
        ground_truth = glob.glob(os.path.join(self.gt_dir, "*", "*_gtFine_instanceIds.png"))
        if not ground_truth:
            raise FileNotFoundError(f"no *_gtFine_instanceIds.png under {self.gt_dir}/*/")
        predictions = [cityscapes_eval.getPrediction(gt, args) for gt in ground_truth]

        cityscapes_eval.setInstanceLabels(args)
        gt_instances = cityscapes_eval.getGtInstances(ground_truth, args)
        matches = cityscapes_eval.matchGtWithPreds(predictions, ground_truth, gt_instances, args)
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, "cityscapes_matches.json"), "w") as f:
                json.dump(matches, f, default=_plain)
        averages = cityscapes_eval.computeAverages(
            cityscapes_eval.evaluateMatches(matches, args), args
        )
        cityscapes_eval.printResults(averages, args)
        remove_cityscapes_prediction_dir(self)
        return {"segm": {"AP": averages["allAp"] * 100, "AP50": averages["allAp50%"] * 100}}
