"""Timing and peak-memory measurement, and the per-site PASA benchmark behind
`tools/benchmark_pasa.py`.

Variants are timed interleaved (one run of each per round, medians over rounds)
so that load from other processes hits them alike; report ratios, not times.
"""

import contextlib
import ctypes
import math
import re
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from pasa_det.layers import PASA, LowPassFilter
from pasa_det.layers.reference import published_pasa


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    fns: Dict[str, Callable], repeats: int, device="cpu", warmup: int = 1
) -> Dict[str, float]:
    """Median seconds per call of each function, alternating between them."""
    times = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1)) * 1024


def peak_memory(fn: Callable, device="cpu"):
    """Bytes allocated at the peak of `fn()` above what was allocated before.

    CUDA: the caching allocator's own peak counter. CPU (Linux/glibc): the
    process's resident high-water mark, reset through /proc/self/clear_refs,
    with malloc forced to map large blocks so that freed tensors leave the
    resident set at once. None where neither is available.
    """
    device = torch.device(device)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: 64 KiB, and no dynamic raising
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _proc_status_bytes("VmRSS")
    except (OSError, AttributeError):
        return None
    fn()
    return _proc_status_bytes("VmHWM") - base


def mask_rcnn_aa_sites(
    batch: int, height: int, width: int, config_file: str, with_fpn_top: bool = True
) -> List[dict]:
    """Name and input shape of every PASA module in the backbone of `config_file`
    (a Mask R-CNN PASA config) for a (batch, 3, height, width) input, found by
    running the backbone on the meta device (no compute, no memory). `with_fpn_top`
    adds the P6 filter (MODEL.ANTIALIAS.FPN_TOP, off by default): the smallest map,
    where fixed costs weigh most."""
    from detectron2.modeling import build_backbone

    from pasa_det.config import load_config

    cfg = load_config(
        config_file, ["MODEL.DEVICE", "cpu", "MODEL.ANTIALIAS.FPN_TOP", str(with_fpn_top)]
    )
    backbone = build_backbone(cfg).to("meta").eval()
    sites = []
    for name, module in backbone.named_modules():
        if isinstance(module, PASA):

            def hook(m, inputs, name=name):
                sites.append({"site": name, "shape": list(inputs[0].shape)})

            module.register_forward_pre_hook(hook)
    with torch.no_grad():
        backbone(torch.empty(batch, 3, height, width, device="meta"))
    return sites


def _variants(x: torch.Tensor, kernel_size: int, group: int, train: bool) -> Dict[str, Callable]:
    """Callables for every compared operator on input `x`; in training mode
    each runs forward and backward (to the input and any parameters).

    `pasa` is the default implementation (the C++ kernel on the CPU when
    built), `pasa_torch` the torch one that serves elsewhere; `floor` is the
    filter-logit convolution alone, zero-padded inside the convolution as
    `pasa` runs it (no padded copy)."""
    channels = x.shape[1]
    pasa = PASA(channels, kernel_size, stride=2, group=group).to(x.device).train(train)
    pasa_torch = (
        PASA(channels, kernel_size, stride=2, group=group, impl="torch").to(x.device).train(train)
    )
    pasa_torch.load_state_dict(pasa.state_dict())
    lpf = LowPassFilter(channels, kernel_size, stride=2).to(x.device)
    ops = {
        "pasa": pasa,
        "pasa_torch": pasa_torch,
        "published": lambda t: published_pasa(
            t, pasa.conv.weight, pasa.norm, kernel_size, 2, group
        ),
        "lpf": lpf,
        "subsample": lambda t: t[..., ::2, ::2].contiguous(),
        "floor": lambda t: F.conv2d(t, pasa.conv.weight, stride=2, padding=kernel_size // 2),
    }
    x = x.detach().requires_grad_(train)

    def run(name):
        def infer():
            with torch.no_grad():
                ops[name](x)

        def step():
            x.grad = None
            pasa.zero_grad(set_to_none=True)
            pasa_torch.zero_grad(set_to_none=True)
            ops[name](x).sum().backward()

        return step if train else infer

    return {name: run(name) for name in ops}


@contextlib.contextmanager
def full_float32_precision():
    """TF32 off (CUDA's default for convolutions rounds their inputs to 10 mantissa
    bits), so that a comparison sees the formulations and not that rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _check_outputs_equal(x: torch.Tensor, kernel_size: int, group: int) -> None:
    """Both PASA implementations give the published formulation's eval output."""
    channels = x.shape[1]
    pasa = PASA(channels, kernel_size, stride=2, group=group).to(x.device).eval()
    pasa_torch = (
        PASA(channels, kernel_size, stride=2, group=group, impl="torch").to(x.device).eval()
    )
    pasa_torch.load_state_dict(pasa.state_dict())
    with torch.no_grad(), full_float32_precision():
        expected = published_pasa(x, pasa.conv.weight, pasa.norm, kernel_size, 2, group)
        torch.testing.assert_close(pasa(x), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(pasa_torch(x), expected, rtol=1e-4, atol=1e-4)


def time_site(
    shape, kernel_size: int, group: int, repeats: int, device="cpu", seed: int = 0
) -> dict:
    """Eval-forward and train-forward+backward median times of every variant
    at one input shape, after checking the outputs equal."""
    torch.manual_seed(seed)
    x = torch.randn(*shape, device=device)
    _check_outputs_equal(x, kernel_size, group)
    result = {}
    for mode, train in (("eval", False), ("train", True)):
        times = interleaved_medians(_variants(x, kernel_size, group, train), repeats, device)
        result[mode] = {name: {"time_s": t} for name, t in times.items()}
    return result


def add_site_memory(
    record: dict, kernel_size: int, group: int, device="cpu", seed: int = 0
) -> dict:
    """Add every variant's peak memory to a `time_site` record of input shape
    `record["shape"]`. On the CPU this changes malloc's settings for the rest
    of the process, so take all timings first."""
    torch.manual_seed(seed)
    x = torch.randn(*record["shape"], device=device)
    for mode, train in (("eval", False), ("train", True)):
        for name, fn in _variants(x, kernel_size, group, train).items():
            record[mode][name]["peak_bytes"] = peak_memory(fn, device)
    return record


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(records: List[dict]) -> Dict[str, dict]:
    """Per kernel size, geometric means over sites of the ratios the targets use."""
    ratios = {
        "eval_speedup_vs_published": lambda r: (
            r["eval"]["published"]["time_s"] / r["eval"]["pasa"]["time_s"]
        ),
        "eval_time_vs_floor": lambda r: r["eval"]["pasa"]["time_s"] / r["eval"]["floor"]["time_s"],
        "eval_time_vs_lpf": lambda r: r["eval"]["pasa"]["time_s"] / r["eval"]["lpf"]["time_s"],
        "eval_torch_impl_vs_default": lambda r: (
            r["eval"]["pasa_torch"]["time_s"] / r["eval"]["pasa"]["time_s"]
        ),
        "train_speedup_vs_published": lambda r: (
            r["train"]["published"]["time_s"] / r["train"]["pasa"]["time_s"]
        ),
        "train_time_vs_floor": lambda r: (
            r["train"]["pasa"]["time_s"] / r["train"]["floor"]["time_s"]
        ),
        "train_torch_impl_vs_default": lambda r: (
            r["train"]["pasa_torch"]["time_s"] / r["train"]["pasa"]["time_s"]
        ),
        "train_memory_vs_published": lambda r: (
            r["train"]["pasa"]["peak_bytes"] / r["train"]["published"]["peak_bytes"]
        ),
    }
    summary = {}
    for k in sorted({r["kernel_size"] for r in records}):
        rows = [r for r in records if r["kernel_size"] == k]
        summary[f"k{k}"] = {}
        for name, ratio in ratios.items():
            try:
                summary[f"k{k}"][name] = geometric_mean(ratio(r) for r in rows)
            except (TypeError, ZeroDivisionError, ValueError):  # memory not measurable here
                summary[f"k{k}"][name] = None
    return summary


def format_table(records: List[dict], summary: Dict[str, dict]) -> str:
    variants = ["pasa", "pasa_torch", "published", "lpf", "subsample", "floor"]
    head = f"{'site':<28}{'k':>2} {'mode':<6}" + "".join(f"{v + ' ms':>13}" for v in variants)
    head += f"{'pub/ours':>10}{'ours/floor':>11}{'mem o/p':>9}"
    lines = [head]
    for r in records:
        for mode in ("eval", "train"):
            m = r[mode]
            ms = "".join(f"{m[v]['time_s'] * 1e3:13.1f}" for v in variants)
            mem = m["pasa"]["peak_bytes"], m["published"]["peak_bytes"]
            mem_ratio = (
                f"{mem[0] / mem[1]:9.3f}" if mem[0] is not None and mem[1] else f"{'n/a':>9}"
            )
            lines.append(
                f"{r['site']:<28}{r['kernel_size']:>2} {mode:<6}{ms}"
                f"{m['published']['time_s'] / m['pasa']['time_s']:10.1f}"
                f"{m['pasa']['time_s'] / m['floor']['time_s']:11.2f}{mem_ratio}"
            )
    lines.append("geometric means over sites:")
    for k, ratios in summary.items():
        lines.append(
            f"  {k}: "
            + ", ".join(f"{n}={v:.3g}" if v is not None else f"{n}=n/a" for n, v in ratios.items())
        )
    return "\n".join(lines)
