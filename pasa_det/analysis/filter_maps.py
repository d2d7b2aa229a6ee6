"""How strongly PASA's predicted filters blur, position by position.

The numbers behind `tools/visualize_filters.py`: forward hooks that capture the
filters every PASA module predicts, and the per-site summaries (normalised
entropy maps, mean filters) computed from them. No detectron2 API is used here;
the figures and the model-running driver live in `filter_figures.py`.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence

import torch
from torch import nn

from pasa_det.layers.pasa import PASA


def renormalize_groups(weights: torch.Tensor) -> torch.Tensor:
    """(N, G, k*k, H, W) filters -> the same with every group's taps summing to 1.

    With the `joint` softmax a group's filter sums to its share of 1; dividing
    that share out gives the filter's shape, which is what blur strength is about.
    Where a group's share underflowed to 0 (it is muted there) its filter has no
    shape: NaN, which the summaries leave out.
    """
    return weights / weights.sum(dim=2, keepdim=True)


def normalized_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(N, G, k*k, H, W) per-group distributions -> (N, G, H, W) entropy / log(k*k):
    1 for a uniform box blur, 0 for a single tap (no blur at all)."""
    taps = probs.shape[2]
    if taps == 1:
        return probs.new_zeros(probs.shape[:2] + probs.shape[3:])
    return -torch.special.xlogy(probs, probs).sum(dim=2) / math.log(taps)


def mean_filters(probs: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(N, G, k*k, H, W) -> (N, G, k, k): each group's filter averaged over the
    positions where it has one (NaN for a group muted everywhere)."""
    return probs.flatten(3).nanmean(dim=3).unflatten(2, (kernel_size, kernel_size))


def site_stride(input_hw: Sequence[int], map_hw: Sequence[int]) -> int:
    """Input pixels per filter position, from the size of the (padded) tensor the
    backbone saw and the size of a site's (H_out, W_out) map.

    Every downsampling step rounds up and strides are powers of two, so the map
    holds between input/stride and input/stride + 1 positions per side: the ratio
    lies in (stride/2, stride] whenever input > stride. Otherwise the map is a
    single cell over the whole input, which every such stride draws alike.
    """
    ratio = max(input_hw[0] / map_hw[0], input_hw[1] / map_hw[1])
    return 2 ** max(0, math.ceil(math.log2(ratio) - 1e-9))


def upsample_to_image(
    site_map: torch.Tensor, stride: int, resized_hw: Sequence[int], image_hw: Sequence[int]
) -> torch.Tensor:
    """(..., H, W) map at a site -> (..., image_h, image_w): every image pixel takes the
    value of the filter position whose stride x stride cell holds it in the resized
    image the model saw (nearest neighbour, so cells stay visible as cells)."""

    def index(n_out: int, resized: int, n_map: int) -> torch.Tensor:
        coords = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (resized / n_out)
        return (coords // stride).long().clamp_(max=n_map - 1)

    rows = index(image_hw[0], resized_hw[0], site_map.shape[-2])
    cols = index(image_hw[1], resized_hw[1], site_map.shape[-1])
    return site_map[..., rows[:, None], cols[None, :]]


class UnknownSiteError(ValueError):
    """A requested site names no PASA module of the model."""


def find_pasa_modules(
    model: nn.Module, sites: Optional[Iterable[str]] = None
) -> "OrderedDict[str, PASA]":
    """The model's PASA modules by qualified name, in registration order. `sites`
    keeps those named exactly or ending in `.<site>` (`stem.aa`, `res3.0.aa`, or
    `aa` for every main-path filter); a site matching none is an error naming all."""
    found = OrderedDict((name, m) for name, m in model.named_modules() if isinstance(m, PASA))
    if sites is None:
        return found
    sites = list(sites)
    matches = {s: [n for n in found if n == s or n.endswith("." + s)] for s in sites}
    unknown = [s for s in sites if not matches[s]]
    if unknown:
        raise UnknownSiteError(
            f"no PASA module named {unknown}; the model has: {list(found) or 'none'}"
        )
    return OrderedDict((n, found[n]) for n in found if any(n in m for m in matches.values()))


@dataclass
class SiteFilters:
    """What one PASA module predicted in one forward pass (batch of N)."""

    weights: torch.Tensor  # (N, G, k*k, H_out, W_out) as predicted, on the CPU, float32
    kernel_size: int


class FilterRecorder:
    """Context manager capturing, on every forward, the filters each selected PASA
    module predicts (`records[name]`, in the order the modules ran; a module's next
    call overwrites its entry).

    The hook recomputes `filter_weights` from the module's input rather than
    reaching into the forward, so the module's own code stays untouched.
    """

    def __init__(self, model: nn.Module, sites: Optional[Iterable[str]] = None):
        self.modules = find_pasa_modules(model, sites)
        self.records: Dict[str, SiteFilters] = {}
        self._handles = []

    def _hook(self, name: str):
        def hook(module: PASA, inputs, output):
            with torch.no_grad():
                weights = module.filter_weights(inputs[0])
            self.records[name] = SiteFilters(weights.detach().float().cpu(), module.kernel_size)

        return hook

    def __enter__(self) -> "FilterRecorder":
        self._handles = [
            m.register_forward_hook(self._hook(name)) for name, m in self.modules.items()
        ]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []


def summarize_site(
    record: SiteFilters, resized_hw: Sequence[int], padded_hw: Sequence[int], index: int = 0
) -> dict:
    """Maps and numbers for image `index` of a recorded batch, over the filter
    positions inside its resized image (`resized_hw`), not the zero padding that
    brings the batch to `padded_hw`:

    - `stride`: image pixels per position; `entropy`: (G, h, w) normalised entropy,
      NaN where a group is muted; `mean_entropy_per_group`: (G,) over the rest;
    - `mean_filter`: (G, k, k) renormalised filters averaged over positions;
    - `group_mass`: (G,) mean share of the softmax each group holds (the shares sum
      to 1 under `joint`, each is 1 under `group`); `muted_fraction`: (G,) share of
      positions where a group's weights underflowed to 0.
    """
    stride = site_stride(padded_hw, record.weights.shape[-2:])
    h = min(math.ceil(resized_hw[0] / stride), record.weights.shape[-2])
    w = min(math.ceil(resized_hw[1] / stride), record.weights.shape[-1])
    weights = record.weights[index : index + 1, ..., :h, :w]
    mass = weights.sum(dim=2)[0]
    probs = renormalize_groups(weights)
    entropy = normalized_entropy(probs)[0]
    return {
        "stride": stride,
        "entropy": entropy,
        "mean_entropy_per_group": entropy.flatten(1).nanmean(dim=1),
        "mean_filter": mean_filters(probs, record.kernel_size)[0],
        "group_mass": mass.mean(dim=(1, 2)),
        "muted_fraction": (mass == 0).float().mean(dim=(1, 2)),
    }
