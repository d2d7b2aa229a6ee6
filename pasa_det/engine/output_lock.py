"""One run at a time in an OUTPUT_DIR.

Two runs writing into one folder leave a model_final.pth and config.yaml of one and a
log.txt and metrics.json mixing both, and neither says so. The run's main process holds
an advisory lock (flock) on OUTPUT_DIR/run.lock for its lifetime; the kernel releases it
when the process ends, however it ends, so a lock left by a dead run never blocks.
"""

import datetime
import fcntl
import os
import socket
import sys

LOCK_FILE = "run.lock"
_held = {}  # real path of a folder -> the open lock file of this process


class OutputDirBusy(RuntimeError):
    """Another live run holds the folder; the message names it."""


def lock_output_dir(folder: str) -> None:
    """Hold `folder`'s lock for the rest of this process, or raise OutputDirBusy naming
    the run (pid, host, start, command) that holds it. Again in the same process: a no-op."""
    os.makedirs(folder, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _held:
        return
    path = os.path.join(folder, LOCK_FILE)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "a process that did not say which"
        f.close()
        raise OutputDirBusy(
            f"OUTPUT_DIR {folder} is in use by another run ({holder}). Wait for it to end or "
            "stop it, or set OUTPUT_DIR to another folder"
        ) from None
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    f.seek(0)
    f.truncate()
    f.write(
        f"pid {os.getpid()} on host {socket.gethostname()}, started {started}: "
        f"{' '.join(sys.argv)}\n"
    )
    f.flush()
    _held[key] = f


def release_output_dir(folder: str) -> None:
    """Let another run use `folder` (this process's runs in it have ended)."""
    f = _held.pop(os.path.realpath(folder), None)
    if f is not None:
        f.close()
