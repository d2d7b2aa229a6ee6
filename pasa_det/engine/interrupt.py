"""Stopping training on SIGINT/SIGTERM with a checkpoint, and within a bounded time."""

import logging
import os
import signal
import socket
import sys
import threading
import time

from detectron2.engine import HookBase
from detectron2.utils import comm

logger = logging.getLogger(__name__)


class TrainingInterrupted(BaseException):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint. A BaseException,
    like KeyboardInterrupt, so detectron2 does not log it as a crash."""

    def __init__(self, signum: int, iteration: int, checkpoint: str):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        self.what_happened = (
            f"{signal.Signals(signum).name} received: stopped after iteration {iteration} and saved "
            f"{checkpoint}"
        )
        super().__init__(f"{self.what_happened}; continue with the same command and --resume")


class CheckpointOnSignal(HookBase):
    """On SIGINT or SIGTERM, finish the current iteration, save `model_<iter>.pth` and
    raise TrainingInterrupted; with several processes, all stop after the same iteration.

    A second signal ends the process at once (exit 128 + signal), and so does the first
    one when the iteration does not end within `deadline(slowest iteration so far)`:
    a process blocked in a collective whose peer is gone never returns to Python, where
    signal handlers run, so a thread woken through `signal.set_wakeup_fd` keeps time.
    The same signal again within REPEAT_S counts once (a signal sent to a process group
    reaches a worker both directly and forwarded by its launcher).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    REPEAT_S = 1.0

    def __init__(self, checkpointer, min_deadline_s: float = 60.0, slowest_factor: float = 3.0):
        self.checkpointer = checkpointer
        self.min_deadline_s, self.slowest_factor = min_deadline_s, slowest_factor
        self.received = None
        self._slowest_s = 0.0
        self._step_start = None
        self._previous = {}
        self._previous_wakeup_fd = -1
        self._wakeup = None
        self._done = threading.Event()

    # -- in the main thread, when Python gets to run the handler: the first signal is
    # recorded; what follows it (a repeat, a second signal, the deadline) is the watchdog's.
    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            logger.warning(
                f"{signal.Signals(signum).name} received: saving a checkpoint after this iteration, then "
                "stopping (send it again to stop at once)"
            )

    def _exit_now(self, signum, why: str):
        print(
            f"[rank {comm.get_rank()}] {signal.Signals(signum).name} {why}: stopping without a checkpoint",
            file=sys.stderr,
            flush=True,
        )
        logging.shutdown()
        os._exit(128 + signum)

    # -- in the watchdog thread, woken through the wakeup fd for every signal, even while the
    # main thread is blocked
    def deadline_s(self) -> float:
        return max(self.min_deadline_s, self.slowest_factor * self._slowest_s)

    def _watch(self, reader: socket.socket):
        first, first_at = None, None
        while not self._done.is_set():
            timeout = (
                None if first is None else max(0.0, first_at + self.deadline_s() - time.monotonic())
            )
            reader.settimeout(timeout)
            try:
                data = reader.recv(64)
            except socket.timeout:
                if not self._done.is_set():
                    self._exit_now(
                        first,
                        f"received {self.deadline_s():.0f} s ago and the iteration has not ended "
                        "(blocked waiting for another process?)",
                    )
                return
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum not in self.SIGNALS:
                    continue
                now = time.monotonic()
                if first is None:
                    first, first_at = signum, now
                elif not (signum == first and now - first_at < self.REPEAT_S):
                    self._exit_now(signum, "received a second time")

    def before_train(self):
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers live in the main thread only
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._wakeup = (reader, writer)
        self._previous_wakeup_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        threading.Thread(
            target=self._watch, args=(reader,), name="signal-deadline", daemon=True
        ).start()

    def before_step(self):
        self._step_start = time.perf_counter()

    def after_step(self):
        if self._step_start is not None:
            self._slowest_s = max(self._slowest_s, time.perf_counter() - self._step_start)
        received = self.received
        if comm.get_world_size() > 1:
            received = max((r or 0) for r in comm.all_gather(received)) or None
        if received is None or self.trainer.iter + 1 >= self.trainer.max_iter:
            return  # the last iteration ends with model_final anyway
        name = f"model_{self.trainer.iter:07d}"
        self.checkpointer.save(name, iteration=self.trainer.iter)
        comm.synchronize()
        raise TrainingInterrupted(
            received, self.trainer.iter, os.path.join(self.checkpointer.save_dir, name + ".pth")
        )

    def after_train(self):
        self._done.set()
        if threading.current_thread() is not threading.main_thread() or self._wakeup is None:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for s in self._wakeup:
            s.close()
        self._wakeup = None
