"""Where and how a measurement was made, stored beside its numbers so that a table
rendered from the JSON can say which machine, code and command produced it."""

import datetime
import os
import platform
import subprocess
import sys

import torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    """The checkout's commit, with "+changes" when files differ from it; "" outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return ""
    return f"{commit}+changes" if commit and dirty else commit


def _detectron2() -> str:
    """detectron2's release ("main" or its version), and the source set-up built it from
    where it recorded one."""
    try:
        from pasa_det.detectron2_versions import detectron2_release
    except ImportError:
        return ""
    release = detectron2_release()
    marker = os.path.join(sys.prefix, "pasa_det-detectron2-source.txt")
    if os.path.isfile(marker):
        with open(marker) as f:
            source = (f.read().split() or [""])[0]  # the source, then its size and mtime
        return f"{release} ({os.path.basename(source.rstrip('/')) or source})"
    return release


def describe_run(device: str) -> dict:
    """Date, command, commit, software versions and the machine's processor or GPU."""
    described = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "commit": _commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "detectron2": _detectron2(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if torch.device(device).type == "cuda":
        described["gpu"] = torch.cuda.get_device_name(device)
    return described
