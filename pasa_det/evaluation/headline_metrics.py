"""An evaluation counts only if its headline metrics are numbers.

detectron2's COCOEvaluator reports NaN for every AP when the model predicts no instance
at all (a diverged or barely trained model), and a run that ends that way still exits 0.
Secondary metrics may be NaN for good reasons (APl without large objects, a class absent
from the set) and are not checked."""

import math

# Per task: the metric a results table leads with.
HEADLINE = {"bbox": "AP", "segm": "AP", "keypoints": "AP", "sem_seg": "mIoU", "panoptic_seg": "PQ"}


class EvaluationFailed(ValueError):
    """An evaluation gave no usable number; the message says which and why it may be."""


def check_headline_metrics(results) -> None:
    """Raise EvaluationFailed when a headline metric of `results` ({dataset: {task:
    {metric: value}}}, or one dataset's {task: …}) is NaN."""
    if not results:
        return
    datasets = results if all(k not in HEADLINE for k in results) else {"": results}
    missing = []
    for dataset, tasks in datasets.items():
        for task, metrics in tasks.items():
            value = metrics.get(HEADLINE.get(task)) if isinstance(metrics, dict) else None
            if isinstance(value, float) and math.isnan(value):
                where = f" on {dataset}" if dataset else ""
                missing.append(f"{task} {HEADLINE[task]}{where}")
    if missing:
        raise EvaluationFailed(
            f"the evaluation gave no number for {', '.join(missing)} (NaN): detectron2 reports "
            "NaN when the model predicts nothing at all, e.g. after training diverged or when it "
            "was far too short. Check the losses in OUTPUT_DIR/metrics.json; the run is not "
            "counted as a success"
        )
