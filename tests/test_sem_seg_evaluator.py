import math

import numpy as np

from pasa_det.evaluation import scores_from_confusion


def test_scores_from_hand_made_confusion_matrix():
    # rows: ground truth, columns: prediction
    conf = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    res = scores_from_confusion(conf, ["a", "b", "c"])
    assert math.isclose(res["IoU-a"], 100 * 8 / (10 + 9 - 8))
    assert math.isclose(res["IoU-b"], 100 * 3 / (4 + 5 - 3))
    assert math.isnan(res["IoU-c"])  # absent everywhere: left out of the means
    assert math.isclose(res["mIoU"], (res["IoU-a"] + res["IoU-b"]) / 2)
    assert math.isclose(res["pACC"], 100 * 11 / 14)
    assert math.isclose(res["mACC"], 100 * (8 / 10 + 3 / 4) / 2)
    assert math.isclose(res["fwIoU"], res["IoU-a"] * 10 / 14 + res["IoU-b"] * 4 / 14)
