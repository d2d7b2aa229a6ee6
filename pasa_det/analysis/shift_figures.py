"""Pictures of what moves under shifts: each shift metric against the shift distance,
one line per variant with its spread over seeds (from a comparison's JSON), and one
image's predictions under growing shifts, the variants side by side (a strip and a GIF).

Matplotlib's object API with the Agg canvas only (no pyplot): nothing global is switched.
"""

import os
import re
import statistics
from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import build_augmentation, read_image
from detectron2.utils.visualizer import ColorMode, Visualizer
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from PIL import Image

from pasa_det.evaluation.image_shifts import translate

# Shift results whose key ends in a direction and a distance (px): the grid's APs, the
# sub-pixel APs and agreements, the semantic agreement per integer distance.
_DISTANCE = r"(?:right|left|down|up)([\d.]+)"
PANELS = {
    "instances": [("segm", "mask AP"), ("bbox", "box AP")],
    "semantic": [("labels", "labels agreeing, %")],
}


def task_of(report: Dict) -> str:
    run = next(iter(next(iter(report["variants"].values()))["runs"].values()))
    return "instances" if "segm_AP_0" in run["metrics"].get("shift_consistency", {}) else "semantic"


def curve(shift: Dict, panel: str) -> Dict[float, float]:
    """Shift distance (px) -> the metric averaged over the directions measured at it, from
    one run's shift-consistency results; 0 px is the unshifted score (100 % agreement)."""
    if panel == "labels":
        pattern = re.compile(rf"(?:subpixel_{_DISTANCE}|zero_shift_(\d+)px)")
        points: Dict[float, List[float]] = {0.0: [100.0]}
    else:
        pattern = re.compile(rf"{panel}_AP_(?:subpixel_)?{_DISTANCE}")
        points = {0.0: [shift[f"{panel}_AP_0"]]}
    for key, value in shift.items():
        m = pattern.fullmatch(key)
        if m and value is not None and not np.isnan(value):
            distance = float(next(g for g in m.groups() if g is not None))
            points.setdefault(distance, []).append(value)
    return {d: statistics.fmean(v) for d, v in sorted(points.items())}


def plot_shift_curves(report: Dict) -> Figure:
    """One panel per metric: its value against the shift distance, a line per variant
    (mean over seeds) with a band of ± one standard deviation over seeds."""
    panels = PANELS[task_of(report)]
    fig = Figure(figsize=(5.2 * len(panels), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    seeds = len(report["seeds"])
    for i, (panel, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for variant, row in report["variants"].items():
            runs = [curve(r["metrics"]["shift_consistency"], panel) for r in row["runs"].values()]
            distances = sorted(set.intersection(*(set(c) for c in runs)))
            values = np.array([[c[d] for d in distances] for c in runs])
            mean = values.mean(axis=0)
            (line,) = ax.plot(distances, mean, marker="o", markersize=3, label=variant)
            if len(runs) > 1:
                std = values.std(axis=0, ddof=1)
                ax.fill_between(
                    distances, mean - std, mean + std, alpha=0.2, color=line.get_color()
                )
        ax.set_xscale("symlog", linthresh=1.0)
        ticks = sorted({d for line in ax.get_lines() for d in line.get_xdata()})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=8)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("shift (px; linear below 1, log above)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(title=f"{seeds} seeds, mean ± std")
    return fig


def _predict(model, image_rgb: np.ndarray, augmentations, image_format: str):
    h, w = image_rgb.shape[:2]
    aug = T.AugInput(image_rgb if image_format == "RGB" else image_rgb[:, :, ::-1])
    augmentations(aug)
    tensor = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
    with torch.no_grad():
        return model.eval()([{"image": tensor, "height": h, "width": w}])[0]


def with_fixed_colors(metadata) -> Metadata:
    """The dataset's class names with one fixed colour per class (tab10), so that the
    strip's cells colour a class alike (the Visualizer picks random ones otherwise)."""
    palette = [[int(255 * c) for c in colormaps["tab10"](i)[:3]] for i in range(10)]
    things = list(metadata.get("thing_classes", []))
    stuff = list(metadata.get("stuff_classes", []))
    return Metadata(
        thing_classes=things,
        thing_colors=[palette[i % 10] for i in range(len(things))],
        stuff_classes=stuff,
        stuff_colors=[palette[i % 10] for i in range(len(stuff))],
    )


def draw_prediction(
    output: Dict, image_rgb: np.ndarray, metadata, score_thresh: float
) -> np.ndarray:
    """The prediction drawn over the image, as detectron2's Visualizer draws it (instances
    coloured by class)."""
    visualizer = Visualizer(image_rgb, metadata, instance_mode=ColorMode.SEGMENTATION)
    if "instances" in output:
        instances = output["instances"].to("cpu")
        drawn = visualizer.draw_instance_predictions(instances[instances.scores >= score_thresh])
    else:
        drawn = visualizer.draw_sem_seg(output["sem_seg"].argmax(dim=0).cpu())
    return drawn.get_image()


def prediction_strip(
    models: Dict[str, torch.nn.Module],
    cfg,
    image_rgb: np.ndarray,
    shifts: Sequence[int],
    score_thresh: float = 0.5,
) -> Figure:
    """A row per variant, a column per shift: the image moved right by s px (border
    zero-filled) with that variant's prediction drawn over it."""
    metadata = with_fixed_colors(MetadataCatalog.get(cfg.DATASETS.TEST[0]))
    augmentations = T.AugmentationList(build_augmentation(cfg, is_train=False))
    fig = Figure(figsize=(1.6 * len(shifts), 1.7 * len(models)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(models), len(shifts), squeeze=False)
    for r, (variant, model) in enumerate(models.items()):
        for c, s in enumerate(shifts):
            moved = translate(image_rgb, s, 0)
            output = _predict(model, moved, augmentations, cfg.INPUT.FORMAT)
            axes[r, c].imshow(draw_prediction(output, moved, metadata, score_thresh))
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"{s} px", fontsize=9)
            if c == 0:
                axes[r, c].set_ylabel(variant, fontsize=10)
    return fig


def strip_frames(fig: Figure, columns: int) -> List[Image.Image]:
    """The strip cut into its columns: one GIF frame per shift, the variants stacked,
    each frame led by the strip's row labels."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[:, :, :3]
    w = pixels.shape[1]
    spans = [(int(ax.get_position().x0 * w), int(ax.get_position().x1 * w)) for ax in fig.axes]
    labels = pixels[:, : max(spans[0][0] - 2, 0)]
    frames = []
    for left, right in spans[:columns]:
        column = pixels[:, max(left - 2, 0) : min(right + 2, w)]
        frames.append(Image.fromarray(np.ascontiguousarray(np.concatenate([labels, column], 1))))
    return frames


def save_gif(frames: List[Image.Image], path: str, ms_per_frame: int = 350) -> None:
    """Frames of one size (the widest; narrower ones padded white), looping."""
    width = max(f.width for f in frames)
    padded = []
    for f in frames:
        canvas = Image.new("RGB", (width, f.height), "white")
        canvas.paste(f, (0, 0))
        padded.append(canvas)
    padded[0].save(path, save_all=True, append_images=padded[1:], duration=ms_per_frame, loop=0)


STRIP_SHIFTS = tuple(range(9))  # 0 ... 8 px
FIGURE_FILES = ("shift_curves.png", "shift_strip.png", "shift_strip.gif")


def write_figures(report: Dict, cfg, models: Dict, output_dir: str, prefix: str = "") -> List[str]:
    """The curves of `report` and the strip (PNG and GIF) of `models` (one config `cfg`,
    its first test image) into `output_dir`; the paths written."""
    paths = [os.path.join(output_dir, f"{prefix}{name}") for name in FIGURE_FILES]
    plot_shift_curves(report).savefig(paths[0], dpi=110)
    first = DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]["file_name"]
    strip = prediction_strip(models, cfg, read_image(first, format="RGB"), STRIP_SHIFTS)
    strip.savefig(paths[1], dpi=110)
    save_gif(strip_frames(strip, len(STRIP_SHIFTS)), paths[2])
    return paths
