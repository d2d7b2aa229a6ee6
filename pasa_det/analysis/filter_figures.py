"""Figures and a JSON summary of the filters a PASA model predicts on images.

Matplotlib's object API with the Agg canvas only (no pyplot): nothing global is
switched, so importing this next to other plotting code changes nothing.
"""

import json
import logging
import math
import os
import warnings
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from matplotlib import colormaps
from matplotlib.figure import Figure

from pasa_det.checkpoint import load_checkpoint
from pasa_det.engine import Trainer
from pasa_det.engine.demo import iter_image_paths

from .filter_maps import FilterRecorder, summarize_site, upsample_to_image

logger = logging.getLogger(__name__)
ENTROPY_CMAP = colormaps["magma"].with_extremes(bad="0.7")  # grey: group muted there
FILTER_CMAP = colormaps["viridis"].with_extremes(bad="0.7")


def short_name(site: str) -> str:
    """`backbone.bottom_up.res3.0.aa` -> `res3.0.aa`: the part that says where."""
    for prefix in ("backbone.bottom_up.", "backbone."):
        if site.startswith(prefix):
            return site[len(prefix) :]
    return site


def _grid(n: int):
    cols = min(n, 4) if n <= 8 else 8
    return math.ceil(n / cols), cols


def _overlay(ax, image_rgb: np.ndarray, summary: dict, resized_hw, alpha: float):
    mean_map = summary["entropy"].nanmean(dim=0)
    upsampled = upsample_to_image(mean_map, summary["stride"], resized_hw, image_rgb.shape[:2])
    ax.imshow(image_rgb)
    im = ax.imshow(upsampled.numpy(), cmap=ENTROPY_CMAP, vmin=0.0, vmax=1.0, alpha=alpha)
    ax.set_axis_off()
    return im


def plot_site(
    image_rgb: np.ndarray, site: str, summary: dict, resized_hw, alpha: float = 0.5
) -> Figure:
    """One site on one image: the group-averaged entropy over the image (left), each
    group's entropy map at the site's resolution (top right) and each group's mean
    filter (bottom right)."""
    entropy, filters = summary["entropy"], summary["mean_filter"]
    groups, k = filters.shape[0], filters.shape[-1]
    rows, cols = _grid(groups)
    fig = Figure(figsize=(6 + 1.6 * cols, max(5.0, 3.2 * rows)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[6, 1.6 * cols])
    top, bottom = right.subfigures(2, 1)

    ax = left.subplots()
    im = _overlay(ax, image_rgb, summary, resized_hw, alpha)
    left.colorbar(
        im, ax=ax, shrink=0.8, label="normalised filter entropy (1 = box blur, 0 = no blur)"
    )
    ax.set_title(
        f"{short_name(site)}  (stride {summary['stride']}, k={k}, G={groups})\n"
        f"mean entropy {entropy.nanmean().item():.3f}"
    )

    axes = top.subplots(rows, cols, squeeze=False).ravel()
    for g, ax in enumerate(axes):
        ax.set_axis_off()
        if g < groups:
            im = ax.imshow(
                entropy[g].numpy(), cmap=ENTROPY_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest"
            )
            ax.set_title(
                f"g{g}: H {summary['mean_entropy_per_group'][g]:.2f}, "
                f"mass {summary['group_mass'][g]:.2f}",
                fontsize=8,
            )
    top.colorbar(im, ax=axes.tolist(), shrink=0.8)
    top.suptitle("entropy per group", fontsize=10)

    vmax = filters.nan_to_num(0.0).max().item()
    axes = bottom.subplots(rows, cols, squeeze=False).ravel()
    for g, ax in enumerate(axes):
        ax.set_axis_off()
        if g < groups:
            im = ax.imshow(
                filters[g].numpy(), cmap=FILTER_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest"
            )
            ax.set_title(f"g{g}", fontsize=8)
            if k <= 3:
                for (i, j), v in np.ndenumerate(filters[g].numpy()):
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black" if v > 0.6 * vmax else "white",
                    )
    bottom.colorbar(im, ax=axes.tolist(), shrink=0.8)
    bottom.suptitle(f"mean filter per group (uniform = {1 / k**2:.3f})", fontsize=10)
    return fig


def plot_overview(
    image_rgb: np.ndarray, summaries: Dict[str, dict], resized_hw, alpha: float = 0.5
) -> Figure:
    """Every site's group-averaged entropy over the image, side by side, one colour scale."""
    rows, cols = _grid(len(summaries))
    fig = Figure(figsize=(3.6 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (site, summary) in zip(axes, summaries.items()):
        im = _overlay(ax, image_rgb, summary, resized_hw, alpha)
        ax.set_title(
            f"{short_name(site)} (/{summary['stride']}): {summary['entropy'].nanmean().item():.3f}",
            fontsize=9,
        )
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8, label="normalised filter entropy")
    return fig


def _json_floats(values) -> list:
    """Rounded floats, NaN (a group muted everywhere) as null."""
    rounded = np.round(np.asarray(values, dtype=np.float64), 6)
    return np.where(np.isnan(rounded), None, rounded).tolist()


def site_json(summary: dict) -> dict:
    """The numbers of `summarize_site`, without the maps."""
    groups, k = summary["mean_filter"].shape[:2]
    return {
        "stride": summary["stride"],
        "kernel_size": k,
        "group": groups,
        "map_hw": list(summary["entropy"].shape[-2:]),
        "mean_entropy": _json_floats(summary["entropy"].nanmean()),
        "mean_entropy_per_group": _json_floats(summary["mean_entropy_per_group"]),
        "group_mass": _json_floats(summary["group_mass"]),
        "muted_fraction": _json_floats(summary["muted_fraction"]),
        "mean_filter_per_group": _json_floats(summary["mean_filter"]),
    }


def _average_over_images(images: Sequence[dict]) -> dict:
    """Per site, the per-image numbers averaged over the images (nulls left out)."""
    out = {}
    with warnings.catch_warnings():  # a group muted on every image: NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        for site in images[0]["sites"] if images else ():
            per_image = [img["sites"][site] for img in images]
            out[site] = {
                key: _json_floats(
                    np.nanmean(np.array([s[key] for s in per_image], dtype=np.float64), axis=0)
                )
                for key in ("mean_entropy", "mean_entropy_per_group", "mean_filter_per_group")
            }
    return out


def visualize_filters(
    cfg,
    inputs: Iterable[str],
    output_dir: str,
    sites: Optional[Iterable[str]] = None,
    alpha: float = 0.5,
) -> dict:
    """Run the model of `cfg` (weights from MODEL.WEIGHTS, if set) on each image as
    detectron2 infers, and write `<output_dir>/<image>/<site>.png`, `.../overview.png`
    and `<output_dir>/filters.json`; return what the JSON holds."""
    model = Trainer.build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_checkpoint(cfg, model)
    model.eval()
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    os.makedirs(output_dir, exist_ok=True)
    images, skipped, used = [], [], set()
    padded = {}  # the backbone's input: the resized image padded to its size divisibility
    model.backbone.register_forward_pre_hook(
        lambda m, inputs: padded.update(hw=inputs[0].shape[-2:])
    )
    with FilterRecorder(model, sites) as recorder:
        if not recorder.modules:
            raise ValueError("the model has no PASA module (is MODEL.ANTIALIAS.TYPE 'pasa'?)")
        for path in iter_image_paths(inputs):
            try:
                image = read_image(path, format=cfg.INPUT.FORMAT)
            except Exception as e:  # unreadable or missing file: name it and go on
                logger.warning(f"skipped {path}: cannot read it as an image ({e})")
                skipped.append(path)
                continue
            resized = resize.get_transform(image).apply_image(image)
            tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
            recorder.records.clear()
            with torch.no_grad():
                model([{"image": tensor, "height": image.shape[0], "width": image.shape[1]}])
            resized_hw = resized.shape[:2]
            summaries = {
                name: summarize_site(rec, resized_hw, padded["hw"])
                for name, rec in recorder.records.items()
            }

            rgb = image[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else image
            rgb = np.ascontiguousarray(np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb)
            stem = os.path.splitext(os.path.basename(path))[0]
            name, n = stem, 1
            while name in used:
                n += 1
                name = f"{stem}_{n}"
            used.add(name)
            image_dir = os.path.join(output_dir, name)
            os.makedirs(image_dir, exist_ok=True)
            for site, summary in summaries.items():
                plot_site(rgb, site, summary, resized_hw, alpha).savefig(
                    os.path.join(image_dir, f"{site}.png"), dpi=100
                )
            plot_overview(rgb, summaries, resized_hw, alpha).savefig(
                os.path.join(image_dir, "overview.png"), dpi=100
            )
            images.append(
                {
                    "file": path,
                    "output": image_dir,
                    "image_hw": list(image.shape[:2]),
                    "resized_hw": list(resized_hw),
                    "sites": {site: site_json(s) for site, s in summaries.items()},
                }
            )
    result = {
        "weights": cfg.MODEL.WEIGHTS,
        "images": images,
        "skipped": skipped,
        "sites": _average_over_images(images),
    }
    with open(os.path.join(output_dir, "filters.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result
