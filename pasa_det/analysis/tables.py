"""Markdown tables of the result files committed under results/, so that the docs show
numbers only as a run wrote them. A docs block

    <!-- table KIND results/FILE.json [results/OTHER.json ...] -->
    ...
    <!-- end table -->

is replaced by `render(KIND, FILES)`; `tools/render_docs.py` rewrites or checks the docs.
Only the quickstart table takes several files (one row each)."""

import json
import os
import re
from typing import Callable, Dict

from .compare import differences_table
from .compare import markdown_table as comparison_table

BLOCK = re.compile(
    r"(<!-- table (?P<kind>[a-z_]+) (?P<paths>\S+\.json(?: \S+\.json)*) -->\n)"
    r"(?P<body>.*?)(<!-- end table -->)",
    re.S,
)


def _ratio(value, met=None) -> str:
    """`value` as a ratio, ticked when `met(value)` says it meets its target."""
    if value is None:
        return "n/a"
    return f"{value:.2f}×" + (" ✔" if met is not None and met(value) else "")


def pasa_sites(data: dict) -> str:
    """Per kernel size, the geometric means over sites of the operator benchmark's ratios."""
    lines = [
        "| k | eval: published / ours (target ≥ 10) | eval: ours / floor (target ≤ 1.5) "
        "| train: published / ours (target ≥ 5) "
        "| train peak memory: ours / published (target ≤ 0.25) | eval / train: torch path / ours |",
        "|---|---|---|---|---|---|",
    ]
    for key, s in data["summary"].items():
        memory = s["train_memory_vs_published"]
        memory = "n/a" if memory is None else f"{memory:.2f}" + (" ✔" if memory <= 0.25 else "")
        lines.append(
            f"| {key[1:]} | {_ratio(s['eval_speedup_vs_published'], lambda v: v >= 10)} "
            f"| {_ratio(s['eval_time_vs_floor'], lambda v: v <= 1.5)} "
            f"| {_ratio(s['train_speedup_vs_published'], lambda v: v >= 5)} | {memory} "
            f"| {_ratio(s['eval_torch_impl_vs_default'])} / "
            f"{_ratio(s['train_torch_impl_vs_default'])} |"
        )
    return "\n".join(lines)


def pasa_largest_site(data: dict) -> str:
    """Median times at the site with the largest map (most channels among equals),
    smallest kernel size."""
    k = min(r["kernel_size"] for r in data["records"])
    records = [r for r in data["records"] if r["kernel_size"] == k]
    largest = max(records, key=lambda r: (r["shape"][-2] * r["shape"][-1], _numel(r["shape"])))
    names = ["pasa", "pasa_torch", "published", "lpf", "floor"]
    header = ["ours", "torch path", "published", "LPF", "floor"]
    lines = [
        f"`{largest['site']}`, input {'×'.join(map(str, largest['shape']))}, k={k}:",
        "",
        "| mode | " + " | ".join(header) + " |",
        "|---" * (len(header) + 1) + "|",
    ]
    for mode in ("eval", "train"):
        cells = [f"{largest[mode][n]['time_s'] * 1e3:.1f} ms" for n in names]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _numel(shape) -> int:
    n = 1
    for side in shape:
        n *= side
    return n


def model_benchmark(data: dict) -> str:
    """Parameters, FLOPs and times of each model with each filter, with ratios to none."""
    gpu = data["environment"]["device"].startswith("cuda")
    scale, unit = (1e3, "ms") if gpu else (1.0, "s")
    lines = [
        f"| model | filter | params | GFLOPs (× none) | inference {unit}/img (× none) "
        f"| train {unit}/iter (× none) |",
        "|---|---|---|---|---|---|",
    ]
    for model, variants in data["results"].items():
        for i, (aa, r) in enumerate(variants.items()):
            lines.append(
                f"| {model if i == 0 else ''} | {aa} | {r['params'] / 1e6:.1f} M "
                f"| {r['flops'] / 1e9:.1f} (×{r['flops_vs_none']:.3f}) "
                f"| {r['inference_s_per_image'] * scale:.3g} "
                f"(×{r['inference_s_per_image_vs_none']:.2f}) "
                f"| {r['train_s_per_iter'] * scale:.3g} (×{r['train_s_per_iter_vs_none']:.2f}) |"
            )
    return "\n".join(lines)


def comparison(data: dict) -> str:
    """The none / LPF / PASA comparison of `tools/compare_antialiasing.py`."""
    return comparison_table(data["variants"])


def comparison_scores(data: dict) -> str:
    """The comparison's accuracy and shift-consistency rows alone (mean ± std over seeds)."""
    return comparison_table(data["variants"], with_costs=False)


def comparison_differences(data: dict) -> str:
    """The same comparison as paired differences between variants, seed by seed."""
    return differences_table(data["variants"])


def quickstart(*runs: dict) -> str:
    """The quickstart's AP after its training run (`tools/quickstart.py`), one row per run;
    equal weight hashes mean the runs trained bit-identical models."""
    lines = [
        "| detectron2 | iterations | box AP | mask AP | training + evaluation | weights (SHA-256) |",
        "|---|---|---|---|---|---|",
    ]
    for data in runs:
        lines.append(
            f"| {data['environment'].get('detectron2', '?')} | {data['iterations']} "
            f"| {data['bbox']['AP']:.1f} | {data['segm']['AP']:.1f} "
            f"| {data['train_and_eval_minutes']:.1f} min | `{data['weights_sha256'][:12]}…` |"
        )
    return "\n".join(lines)


def multiprocess_ap(data: dict) -> str:
    """A multi-process training's AP at its end, beside `--eval-only` of the weights it
    wrote (dev/measure_multiprocess_ap.py), as detectron2 printed them."""
    lines = [
        "| run | processes | box AP | mask AP | minutes |",
        "|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        box, mask = run["metrics"]["bbox"]["AP"], run["metrics"]["segm"]["AP"]
        lines.append(
            f"| {run['run']} | {run['processes']} | {box:.4f} | {mask:.4f} | {run['minutes']:.1f} |"
        )
    return "\n".join(lines)


COMPILED_MODES = {"compiled": "compiled", "compiled_no_layout_opt": "compiled, no layout opt."}


def compile_benchmark(data: dict) -> str:
    """Per step and filter, eager and torch.compile times (inductor's defaults, and with its
    layout optimization off where the file has that mode) and their ratios to eager."""
    modes = [m for m in COMPILED_MODES if any(r["mode"] == m for r in data["records"])]
    lines = [
        "| step | filter | eager (ms) | "
        + " | ".join(f"{COMPILED_MODES[m]} (ms) | {COMPILED_MODES[m]} / eager" for m in modes)
        + " | eager / none eager |",
        "|---|---|---|" + "---|---|" * len(modes) + "---|",
    ]
    runs = {(r["step"], r["antialias"], r["mode"]): r for r in data["records"]}
    for step, aa in dict.fromkeys((r["step"], r["antialias"]) for r in data["records"]):
        eager = runs[step, aa, "eager"]
        cells = [step.replace("_", " "), aa, f"{eager['seconds'] * 1e3:.1f}"]
        for m in modes:
            compiled = runs[step, aa, m]
            cells += [
                f"{compiled['seconds'] * 1e3:.1f}",
                _ratio(compiled["vs_eager"], lambda v: v <= 1),
            ]
        lines.append("| " + " | ".join([*cells, _ratio(eager["vs_none_eager"])]) + " |")
    return "\n".join(lines)


def transcribed(data: dict) -> str:
    """A table kept from a run whose own JSON was not kept: columns and rows as printed."""
    lines = [
        "| " + " | ".join(data["columns"]) + " |",
        "|---" * len(data["columns"]) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in data["rows"]]
    return "\n".join(lines)


KINDS: Dict[str, Callable[[dict], str]] = {
    "pasa_sites": pasa_sites,
    "pasa_largest_site": pasa_largest_site,
    "model_benchmark": model_benchmark,
    "comparison": comparison,
    "comparison_scores": comparison_scores,
    "comparison_differences": comparison_differences,
    "quickstart": quickstart,
    "multiprocess_ap": multiprocess_ap,
    "compile_benchmark": compile_benchmark,
    "transcribed": transcribed,
}


def provenance(data: dict) -> str:
    """One line: when, where and with which command and code the numbers were made."""
    env = data.get("environment", {})
    machine = env.get("gpu") or f"{env.get('cpu', '?')}, {env.get('cpu_cores', '?')} cores"
    parts = [env.get("date", "?"), machine, f"torch {env.get('torch', '?')}"]
    if env.get("commit"):
        parts.append(f"commit {env['commit']}")
    line = f"Run: {', '.join(parts)}: `{env.get('command', '?')}`."
    if env.get("note"):
        line += f" {env['note']}"
    return f"<sub>{line}</sub>"


def render(kind: str, *paths: str) -> str:
    """The table of `kind` from the result files `paths`, with a provenance line per run."""
    if kind not in KINDS:
        raise ValueError(f"unknown table kind {kind!r} in the docs; known: {sorted(KINDS)}")
    if len(paths) != 1 and kind != "quickstart":
        raise ValueError(f"a {kind} table is rendered from one file, got {len(paths)}")
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    lines = dict.fromkeys(provenance(run) for run in runs)  # in order, without repeats
    return f"{KINDS[kind](*runs)}\n\n" + "\n\n".join(lines) + "\n"


def render_document(text: str, root: str) -> str:
    """`text` with every table block re-rendered from its file (paths relative to `root`)."""

    def block(match):
        paths = match["paths"].split()
        for path in paths:
            if not os.path.isfile(os.path.join(root, path)):
                raise FileNotFoundError(
                    f"{path} is named by a table block but does not exist: run the benchmark "
                    "or comparison that writes it (its command is in the text above the "
                    "block), or remove the block"
                )
        body = render(match["kind"], *(os.path.join(root, p) for p in paths))
        return f"{match.group(1)}{body}{match.group(5)}"

    return BLOCK.sub(block, text)
