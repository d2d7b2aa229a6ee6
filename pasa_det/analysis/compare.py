"""The anti-aliasing comparison: the `none`, `lpf` and `pasa` variants of one config
trained with the same budget under one or more seeds (each seed shared by the variants),
then scored on accuracy and shift consistency (mean and standard deviation over seeds),
size, FLOPs and speed, into one JSON and one Markdown table."""

import json
import logging
import os
import platform
import statistics
import time
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.utils.env import seed_all_rng

from pasa_det.analysis.environment import describe_run
from pasa_det.analysis.model_benchmark import count_backbone_flops, time_inference_and_training
from pasa_det.analysis.shift_figures import write_figures
from pasa_det.checkpoint import SafeCheckpointer
from pasa_det.config import ANTIALIAS_TYPES, load_config
from pasa_det.config.checks import SHIFT_PROTOCOLS
from pasa_det.engine.trainer import Trainer
from pasa_det.evaluation import json_ready
from pasa_det.evaluation.shift_consistency import protocol_cost

logger = logging.getLogger(__name__)
VARIANTS = ANTIALIAS_TYPES
TIMING_ROUNDS = 10
RATIO_METRICS = ("backbone GFLOPs / image", "train s / iter", "inference s / image")
RESULT_FILE = "result.json"  # in a run's OUTPUT_DIR once it has been trained and scored


def variant_config(
    config_file: str, variant: str, output_dir: str, opts: Sequence[str] = (), seed: int = 0
):
    """`config_file` with MODEL.ANTIALIAS.TYPE set to `variant`, SEED to `seed`, shift
    consistency on with every protocol, and its own output folder; every other key
    (budget included) shared."""
    cfg = load_config(config_file, list(opts))
    cfg.merge_from_list(
        [
            "MODEL.ANTIALIAS.TYPE",
            variant,
            "SEED",
            str(seed),
            "TEST.SHIFT_CONSISTENCY.ENABLED",
            "True",
            "TEST.SHIFT_CONSISTENCY.PROTOCOLS",
            str(list(SHIFT_PROTOCOLS)),
            "OUTPUT_DIR",
            os.path.join(output_dir, f"seed{seed}", variant),
        ]
    )
    cfg.freeze()
    return cfg


def shift_settings(cfg) -> Dict:
    """What the shift-consistency scores of a run depend on besides its weights."""
    return json_ready(dict(cfg.TEST.SHIFT_CONSISTENCY))


def _evaluated(cfg, model) -> Dict:
    return json_ready({task: dict(values) for task, values in Trainer.test(cfg, model).items()})


def run_variant(cfg):
    """Train one variant from scratch (continuing an interrupted run of the same folder);
    it is evaluated, shift consistency included, after the last iteration. A run whose
    folder already holds its result is not repeated; if it was scored under other
    TEST.SHIFT_CONSISTENCY settings, its model_final.pth is evaluated again (`rescored`
    says when and where). Returns its metrics and the model."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    result_path = os.path.join(cfg.OUTPUT_DIR, RESULT_FILE)
    if os.path.isfile(result_path):
        logger.info(f"{cfg.OUTPUT_DIR}: done before, reading {RESULT_FILE} and model_final.pth")
        model = Trainer.build_model(cfg)
        SafeCheckpointer(model).load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
        with open(result_path) as f:
            row = json.load(f)
        if row.get("shift_settings") != shift_settings(cfg):
            logger.info(f"{cfg.OUTPUT_DIR}: scored under other shift settings; evaluating again")
            environment = describe_run(cfg.MODEL.DEVICE)
            start = time.perf_counter()
            row["metrics"] = _evaluated(cfg, model.eval())
            row["shift_settings"] = shift_settings(cfg)
            row["rescored"] = {
                "environment": environment,
                "eval_wall_s": time.perf_counter() - start,
            }
            with open(result_path, "w") as f:
                json.dump(row, f, indent=2)
        return row, model
    environment = describe_run(cfg.MODEL.DEVICE)
    seed_all_rng(cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    start = time.perf_counter()
    trainer.train()
    row = {
        "environment": environment,  # of the invocation that finished the run
        "metrics": json_ready(
            {task: dict(values) for task, values in trainer.last_eval_results.items()}
        ),
        "train_and_eval_wall_s": time.perf_counter() - start,
        "shift_settings": shift_settings(cfg),
    }
    with open(result_path, "w") as f:
        json.dump(row, f, indent=2)
    return row, trainer.model


def measure_models(cfgs: Dict, models: Dict, rounds: int = TIMING_ROUNDS) -> Dict[str, Dict]:
    """Parameters, the backbone's FLOPs per test image, and inference / training-step
    times of the trained variants, timed interleaved (one run of each per round, medians)
    on the same real test image and training batch, so that other load hits all alike.
    Inference times include the heads, whose work grows with the detections a model makes."""
    cfg = next(iter(cfgs.values()))
    test_inputs = next(iter(Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])))
    train_batch = next(iter(Trainer.build_train_loader(cfg)))

    infer_s, train_s = time_inference_and_training(
        models, test_inputs, train_batch, rounds, cfg.MODEL.DEVICE
    )
    return {
        v: {
            "params_M": sum(p.numel() for p in m.parameters()) / 1e6,
            "backbone_gflops_per_image": count_backbone_flops(m, test_inputs) / 1e9,
            "infer_s_per_image": infer_s[v],
            "train_s_per_iter": train_s[v],
        }
        for v, m in models.items()
    }


def scores(metrics: Dict) -> Dict[str, Optional[float]]:
    """The accuracy and shift-consistency numbers of one trained run that go in the table."""
    shift = metrics.get("shift_consistency", {})
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
                "mask AP worst case": shift.get("segm_AP_worst_case"),
                "mask AP adversarial": shift.get("segm_AP_adversarial"),
                "mask AP mean over sub-pixel shifts": shift.get("segm_AP_subpixel_mean"),
                "mask AP spread over sub-pixel shifts": shift.get("segm_AP_subpixel_spread"),
            }
        )
    if "sem_seg" in metrics:
        out.update(
            {
                "mIoU": metrics["sem_seg"]["mIoU"],
                "consistency": shift.get("consistency"),
                "mASSC circular %": shift.get("massc_circular"),
                "mASSC zero-padded %": shift.get("massc_zero"),
                "sub-pixel consistency %": shift.get("subpixel_mean"),
                "adversarial consistency %": shift.get("adversarial"),
            }
        )
    return out


def _protocol_cost(runs: Dict[str, Dict]) -> Dict:
    """Forward passes per test image of each shift protocol, as the runs' evaluators
    reported them (the same for every run of one comparison)."""
    for per_seed in runs.values():
        for row in per_seed.values():
            cost = protocol_cost(row["metrics"].get("shift_consistency", {}))
            if cost:
                return cost
    return {}


def cost(measured: Dict) -> Dict[str, float]:
    return {
        "params (M)": measured["params_M"],
        "backbone GFLOPs / image": measured["backbone_gflops_per_image"],
        "train s / iter": measured["train_s_per_iter"],
        "inference s / image": measured["infer_s_per_image"],
    }


def mean_and_std(values: List[Optional[float]]) -> Dict[str, Optional[float]]:
    """Mean and sample standard deviation over seeds (std None with one seed)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def summarize(runs: Dict[str, Dict]) -> Dict[str, Dict]:
    """Per metric, its mean and std over the runs (seed -> row) of one variant."""
    per_seed = [scores(row["metrics"]) for row in runs.values()]
    return {metric: mean_and_std([s[metric] for s in per_seed]) for metric in per_seed[0]}


def paired_differences(variants: Dict[str, Dict]) -> Dict[str, Dict[str, Dict]]:
    """For every pair of variants ("pasa − none", in the variants' order), per metric: the
    differences between runs that share a seed, their mean and std, and the values per seed.
    Seed-to-seed variation common to both variants cancels in these differences."""
    names = list(variants)
    out = {}
    for i, base in enumerate(names):
        for other in names[i + 1 :]:
            seeds = [s for s in variants[other]["runs"] if s in variants[base]["runs"]]
            pairs = [
                (
                    scores(variants[other]["runs"][s]["metrics"]),
                    scores(variants[base]["runs"][s]["metrics"]),
                )
                for s in seeds
            ]
            diffs = {
                metric: [
                    a[metric] - b[metric] for a, b in pairs if None not in (a[metric], b[metric])
                ]
                for metric in (pairs[0][0] if pairs else {})
            }
            out[f"{other} − {base}"] = {
                metric: {**mean_and_std(values), "per_seed": values}
                for metric, values in diffs.items()
            }
    return out


def differences_table(variants: Dict[str, Dict]) -> str:
    """Rows of metrics, a column per pair of variants: the mean ± std of the per-seed
    differences, then the differences seed by seed."""
    pairs = paired_differences(variants)
    if not pairs:
        raise ValueError(
            f"differences need two variants or more; this comparison has {list(variants)}"
        )
    names = list(pairs)
    lines = _head(names)
    for metric in pairs[names[0]]:
        cells = []
        for pair in names:
            stat = pairs[pair][metric]
            seeds = ", ".join(f"{v:+.2f}" for v in stat["per_seed"])
            spread = "" if stat["std"] is None else f" ± {stat['std']:.2f}"
            cells.append(f"{stat['mean']:+.2f}{spread} ({seeds})" if stat["n"] else "")
        lines.append(_row(metric, cells))
    return "\n".join(lines)


def _row(label: str, cells: List[str]) -> str:
    return "| " + " | ".join([label, *cells]) + " |"


def _head(columns: List[str]) -> List[str]:
    """A markdown table's header and rule: a metric column, then `columns`."""
    return [_row("metric", columns), "|---|" + "---|" * len(columns)]


def _cell(stat: Dict) -> str:
    if stat["mean"] is None:
        return ""
    if stat["std"] is None:
        return f"{stat['mean']:.2f}"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def markdown_table(variants: Dict[str, Dict], with_costs: bool = True) -> str:
    """Rows of metrics, a column per variant: accuracy and consistency as mean ± std over
    seeds, then (`with_costs`) size, FLOPs and times of the first seed's models (× none
    where present)."""
    names = list(variants)
    lines = _head(names)
    for metric in variants[names[0]]["summary"]:
        lines.append(_row(metric, [_cell(variants[v]["summary"][metric]) for v in names]))
    if not with_costs:
        return "\n".join(lines)
    costs = {v: cost(variants[v]["measured"]) for v in names}
    for metric in costs[names[0]]:
        lines.append(_row(metric, [f"{costs[v][metric]:.2f}" for v in names]))
        if "none" in costs and metric in RATIO_METRICS:
            ratios = [costs[v][metric] / costs["none"][metric] for v in names]
            lines.append(_row(f"{metric} (× none)", [f"{r:.2f}" for r in ratios]))
    return "\n".join(lines)


def compare(
    config_file: str,
    output_dir: str,
    variants: List[str] = VARIANTS,
    opts: Sequence[str] = (),
    rounds: int = TIMING_ROUNDS,
    seeds: Sequence[int] = (0,),
):
    """Run every variant under every seed (a seed's variants share it) and write
    `comparison.json` and `comparison.md` to `output_dir`. Runs already done in
    `output_dir` are read, not repeated, so an interrupted comparison continues.
    The first seed's trained models are counted and timed (`rounds` interleaved rounds)."""
    runs = {v: {} for v in variants}
    first_cfgs, first_models = {}, {}
    environment = describe_run(load_config(config_file, list(opts)).MODEL.DEVICE)
    for seed in seeds:
        for variant in variants:
            cfg = variant_config(config_file, variant, output_dir, opts, seed)
            logger.info(
                f"== {variant}, seed {seed}: {cfg.SOLVER.MAX_ITER} iterations in {cfg.OUTPUT_DIR}"
            )
            row, model = run_variant(cfg)
            runs[variant][str(seed)] = row
            if seed == seeds[0]:
                first_cfgs[variant], first_models[variant] = cfg, model
            else:
                del model
    logger.info("== timing the first seed's trained variants, interleaved")
    measured = measure_models(first_cfgs, first_models, rounds)
    report = {
        "environment": environment,
        "config": config_file,
        "overrides": list(opts),
        "budget": {
            "iterations": cfg.SOLVER.MAX_ITER,
            "images_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        },
        "seeds": list(seeds),
        "shift_settings": shift_settings(cfg),
        "forward_passes_per_image": _protocol_cost(runs),
        "timing_rounds": rounds,
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "device": cfg.MODEL.DEVICE,
        },
        "variants": {
            v: {"summary": summarize(runs[v]), "measured": measured[v], "runs": runs[v]}
            for v in variants
        },
    }
    report = json_ready(report)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "comparison.json"), "w") as f:
        json.dump(report, f, indent=2)
    for path in write_figures(report, first_cfgs[variants[0]], first_models, output_dir):
        logger.info(f"written: {path}")
    table = markdown_table(report["variants"])
    with open(os.path.join(output_dir, "comparison.md"), "w") as f:
        f.write(
            f"`{config_file}`, {cfg.SOLVER.MAX_ITER} iterations of {cfg.SOLVER.IMS_PER_BATCH} "
            f"images, seeds {', '.join(map(str, seeds))} (mean ± std over seeds)\n\n{table}\n\n"
            f"Forward passes per test image, by shift protocol: "
            f"{', '.join(f'{k} {v}' for k, v in report['forward_passes_per_image'].items())}\n"
        )
    return report, table


def redraw_figures(config_file: str, output_dir: str, opts: Sequence[str] = ()) -> List[str]:
    """The pictures of a finished comparison again, from its comparison.json and its first
    seed's saved models: nothing is trained, scored or timed."""
    with open(os.path.join(output_dir, "comparison.json")) as f:
        report = json.load(f)
    cfgs, models = {}, {}
    for variant in report["variants"]:
        cfg = variant_config(config_file, variant, output_dir, opts, report["seeds"][0])
        models[variant] = Trainer.build_model(cfg)
        SafeCheckpointer(models[variant]).load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
        cfgs[variant] = cfg
    return write_figures(report, next(iter(cfgs.values())), models, output_dir)
