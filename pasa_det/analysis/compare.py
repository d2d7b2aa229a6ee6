"""The anti-aliasing comparison: the `none`, `lpf` and `pasa` variants of one config
trained with the same seed and budget, then scored on accuracy, shift consistency,
size, FLOPs and speed, into one JSON and one Markdown table."""

import json
import logging
import os
import platform
import time
from typing import Dict, List, Sequence

import torch
from detectron2.utils.env import seed_all_rng

from pasa_det.analysis.model_benchmark import count_flops, time_inference_and_training
from pasa_det.config import ANTIALIAS_TYPES, load_config
from pasa_det.engine.trainer import Trainer
from pasa_det.evaluation import json_ready

logger = logging.getLogger(__name__)
VARIANTS = ANTIALIAS_TYPES
TIMING_ROUNDS = 10
RATIO_METRICS = ("GFLOPs / image", "train s / iter", "inference s / image")


def variant_config(config_file: str, variant: str, output_dir: str, opts: Sequence[str] = ()):
    """`config_file` with MODEL.ANTIALIAS.TYPE set to `variant`, shift consistency on,
    and its own output folder; every other key (seed and budget included) shared."""
    cfg = load_config(config_file, list(opts))
    cfg.merge_from_list(
        [
            "MODEL.ANTIALIAS.TYPE",
            variant,
            "TEST.SHIFT_CONSISTENCY.ENABLED",
            "True",
            "OUTPUT_DIR",
            os.path.join(output_dir, variant),
        ]
    )
    if cfg.SEED < 0:
        cfg.SEED = 0  # the same seed for every variant
    cfg.freeze()
    return cfg


def run_variant(cfg):
    """Train one variant from scratch; it is evaluated, shift consistency included,
    after the last iteration. Returns its metrics and the trained model."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    seed_all_rng(cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    row = {
        "metrics": json_ready(
            {task: dict(values) for task, values in trainer._last_eval_results.items()}
        ),
        "train_and_eval_wall_s": time.perf_counter() - start,
    }
    return row, trainer.model


def measure_models(cfgs: Dict, models: Dict, rounds: int = TIMING_ROUNDS) -> Dict[str, Dict]:
    """Parameters, FLOPs per test image, and inference / training-step times of the
    trained variants, timed interleaved (one run of each per round, medians) on the
    same real test image and training batch, so that other load hits all alike."""
    cfg = next(iter(cfgs.values()))
    test_inputs = next(iter(Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])))
    train_batch = next(iter(Trainer.build_train_loader(cfg)))

    infer_s, train_s = time_inference_and_training(
        models, test_inputs, train_batch, rounds, cfg.MODEL.DEVICE
    )
    return {
        v: {
            "params_M": sum(p.numel() for p in m.parameters()) / 1e6,
            "gflops_per_image": count_flops(m, test_inputs)["flops"] / 1e9,
            "infer_s_per_image": infer_s[v],
            "train_s_per_iter": train_s[v],
        }
        for v, m in models.items()
    }


def headline(row: Dict) -> Dict[str, float]:
    """The numbers of one variant that go into the table."""
    metrics, shift = row["metrics"], row["metrics"].get("shift_consistency", {})
    out = {}
    if "segm" in metrics:
        out.update({"box AP": metrics["bbox"]["AP"], "mask AP": metrics["segm"]["AP"]})
        out.update(
            {
                "mask AP mean over shifts": shift.get("segm_AP_mean"),
                "mask AP spread over shifts": shift.get("segm_AP_spread"),
                "matched mask IoU": shift.get("mask_iou"),
                "class agreement": shift.get("class_agreement"),
                "unmatched instances %": shift.get("unmatched"),
            }
        )
    if "sem_seg" in metrics:
        out.update({"mIoU": metrics["sem_seg"]["mIoU"], "consistency": shift.get("consistency")})
    out.update(
        {
            "params (M)": row["params_M"],
            "GFLOPs / image": row["gflops_per_image"],
            "train s / iter": row["train_s_per_iter"],
            "inference s / image": row["infer_s_per_image"],
        }
    )
    return out


def markdown_table(rows: Dict[str, Dict]) -> str:
    variants = list(rows)
    table = {v: headline(rows[v]) for v in variants}
    lines = ["| metric | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for metric in table[variants[0]]:
        cells = [table[v][metric] for v in variants]
        lines.append(
            f"| {metric} | " + " | ".join("" if c is None else f"{c:.2f}" for c in cells) + " |"
        )
        if "none" in table and metric in RATIO_METRICS:
            ratios = [table[v][metric] / table["none"][metric] for v in variants]
            lines.append(f"| {metric} (× none) | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    return "\n".join(lines)


def compare(
    config_file: str,
    output_dir: str,
    variants: List[str] = VARIANTS,
    opts: Sequence[str] = (),
    rounds: int = TIMING_ROUNDS,
):
    """Run every variant and write `comparison.json` and `comparison.md` to `output_dir`;
    `rounds` of interleaved timing give the medians."""
    rows, cfgs, models = {}, {}, {}
    for variant in variants:
        cfg = cfgs[variant] = variant_config(config_file, variant, output_dir, opts)
        logger.info(
            f"== {variant}: training {cfg.SOLVER.MAX_ITER} iterations into {cfg.OUTPUT_DIR}"
        )
        rows[variant], models[variant] = run_variant(cfg)
    logger.info("== timing the trained variants, interleaved")
    for variant, measured in measure_models(cfgs, models, rounds).items():
        rows[variant].update(measured)
    report = {
        "config": config_file,
        "overrides": list(opts),
        "budget": {
            "iterations": cfg.SOLVER.MAX_ITER,
            "images_per_batch": cfg.SOLVER.IMS_PER_BATCH,
            "seed": cfg.SEED,
        },
        "timing_rounds": rounds,
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "device": cfg.MODEL.DEVICE,
        },
        "variants": rows,
    }
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "comparison.json"), "w") as f:
        json.dump(json_ready(report), f, indent=2)
    table = markdown_table(rows)
    with open(os.path.join(output_dir, "comparison.md"), "w") as f:
        f.write(
            f"`{config_file}`, {cfg.SOLVER.MAX_ITER} iterations of "
            f"{cfg.SOLVER.IMS_PER_BATCH} images, seed {cfg.SEED}\n\n{table}\n"
        )
    return report, table
