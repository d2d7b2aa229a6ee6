"""An evaluation that stops before its end leaves no result files behind."""

import contextlib
import logging
import os

from detectron2.utils import comm

from .interrupt import StoppedBySignal

logger = logging.getLogger(__name__)


def _snapshot(folder: str) -> dict:
    """Every file under `folder`, with what identifies its content's version."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            files[path] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return files


@contextlib.contextmanager
def results_kept_only_if_complete(folder: str):
    """Files the block creates or rewrites under `folder` are removed (by the main
    process, which writes them) when it stops on a signal: detectron2's evaluators write
    their results as they finish, and a file half-written when the signal came, or a
    predictions file without its metrics, would pass for a finished evaluation's."""
    before = _snapshot(folder) if comm.is_main_process() else None
    try:
        yield
    except StoppedBySignal:
        if before is not None:
            changed = [p for p, v in _snapshot(folder).items() if before.get(p) != v]
            for path in changed:
                os.unlink(path)
            if changed:
                logger.warning(
                    f"removed {len(changed)} result file(s) of the interrupted evaluation from "
                    f"{folder}: {', '.join(sorted(os.path.relpath(p, folder) for p in changed)[:5])}"
                )
        raise
