"""Evaluating a model on its test datasets, as both tools do after training and with
--eval-only."""

import logging
from collections import OrderedDict
from typing import Iterable, Tuple

from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from .interrupt import signals_stop_evaluation
from .partial_results import results_kept_only_if_complete

logger = logging.getLogger(__name__)


def evaluate_datasets(model, datasets: Iterable[Tuple[str, object, object]], inference_dir: str):
    """The results of `model` on each (name, loader, evaluator) of `datasets`, built as they
    are reached: {name: results}, or the results alone for one dataset (as detectron2's
    DefaultTrainer.test returns them), printed in detectron2's csv format.

    SIGINT/SIGTERM stop it at once (EvaluationInterrupted), and what it had written under
    `inference_dir` is removed: no partial result passes for a complete one."""
    results = OrderedDict()
    with signals_stop_evaluation(), results_kept_only_if_complete(inference_dir):
        for name, loader, evaluator in datasets:
            results[name] = inference_on_dataset(model, loader, evaluator)
            if comm.is_main_process():
                logger.info(f"Evaluation results for {name} in csv format:")
                print_csv_format(results[name])
    return next(iter(results.values())) if len(results) == 1 else results
