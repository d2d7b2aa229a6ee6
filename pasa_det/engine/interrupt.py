"""Stopping on SIGINT/SIGTERM within a bounded time: training after the current iteration
with a checkpoint, evaluation at once with nothing of it kept."""

import contextlib
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

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long an evaluation may take to leave after a signal (it holds nothing worth saving;
# a process blocked in a collective whose peer has gone never returns to Python).
EVALUATION_DEADLINE_S = 10.0


class StoppedBySignal(BaseException):
    """The run stopped on SIGINT/SIGTERM; tools exit with 128 + `signum`. A BaseException,
    like KeyboardInterrupt, so detectron2 does not log it as a crash."""

    def __init__(self, signum: int, what_happened: str, next_step: str):
        self.signum, self.what_happened = signum, what_happened
        super().__init__(f"{what_happened}; {next_step}")


class TrainingInterrupted(StoppedBySignal):
    """Training stopped after saving a checkpoint that --resume continues."""

    def __init__(self, signum: int, iteration: int, checkpoint: str):
        self.iteration, self.checkpoint = iteration, checkpoint
        super().__init__(
            signum,
            f"{signal.Signals(signum).name} received: stopped after iteration {iteration} and "
            f"saved {checkpoint}",
            "continue with the same command and --resume",
        )


class EvaluationInterrupted(StoppedBySignal):
    """An evaluation stopped at once; none of its results were kept."""

    def __init__(self, signum: int, next_step: str = "run it again to evaluate"):
        super().__init__(
            signum,
            f"{signal.Signals(signum).name} received during evaluation: stopped it and kept "
            "none of its results",
            next_step,
        )


class _SignalWatch:
    """SIGINT/SIGTERM handlers, and a thread that sees every signal through
    `signal.set_wakeup_fd`, even while the main thread is blocked where Python's handlers
    cannot run (a collective whose peer is gone). `on_signal(signum)` answers the first
    signal in the main thread; a second one, or the first left unanswered for
    `deadline_s()`, ends the process with 128 + the signal. The same signal again within
    REPEAT_S counts once (a signal sent to a process group reaches a worker both directly
    and passed on by its launcher). Watches nest: the inner one serves until it stops."""

    REPEAT_S = 1.0

    def __init__(self, on_signal, deadline_s):
        self.on_signal, self.deadline_s = on_signal, deadline_s
        self._previous, self._previous_wakeup_fd, self._sockets = {}, -1, None
        self._done = threading.Event()

    def start(self) -> "_SignalWatch":
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers live in the main thread only
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._sockets = (reader, writer)
        self._previous_wakeup_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        threading.Thread(
            target=self._watch, args=(reader,), name="signal-deadline", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._done.set()
        if self._sockets is None:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for s in self._sockets:
            s.close()
        self._sockets = None

    def _handle(self, signum, frame):
        self.on_signal(signum)

    def _watch(self, reader: socket.socket):
        first, first_at = None, None
        while not self._done.is_set():
            timeout = (
                None if first is None else max(0.0, first_at + self.deadline_s() - time.monotonic())
            )
            try:
                reader.settimeout(timeout)
                data = reader.recv(64)
            except socket.timeout:
                if not self._done.is_set():
                    _exit_now(
                        first,
                        f"received {self.deadline_s():.0f} s ago and the process has not stopped "
                        "(blocked waiting for another process?)",
                    )
                return
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum not in SIGNALS:
                    continue
                now = time.monotonic()
                if first is None:
                    first, first_at = signum, now
                elif not (signum == first and now - first_at < self.REPEAT_S):
                    _exit_now(signum, "received a second time")


def _exit_now(signum, why: str):
    print(
        f"[rank {comm.get_rank()}] {signal.Signals(signum).name} {why}: stopping without a checkpoint",
        file=sys.stderr,
        flush=True,
    )
    logging.shutdown()
    os._exit(128 + signum)


# The stop signal training has received and not yet acted on: an evaluation that starts
# after it (the final one, after the last iteration) stops at once instead of running.
_pending_signal = None


@contextlib.contextmanager
def signals_stop_evaluation():
    """While evaluating, SIGINT/SIGTERM raise EvaluationInterrupted at once (evaluation
    state is worth nothing), or end the process after EVALUATION_DEADLINE_S; a signal
    training received before the evaluation began stops it before it starts."""
    if _pending_signal is not None:
        raise EvaluationInterrupted(_pending_signal)

    def interrupt(signum):
        raise EvaluationInterrupted(signum)

    watch = _SignalWatch(interrupt, lambda: EVALUATION_DEADLINE_S).start()
    try:
        yield
    finally:
        watch.stop()


class CheckpointOnSignal(HookBase):
    """On SIGINT or SIGTERM, finish the current iteration, save `model_<iter>.pth` and
    raise TrainingInterrupted; with several processes, all stop after the same iteration.
    A second signal ends the process at once (exit 128 + signal), and so does the first
    one when the iteration does not end within `deadline_s()`: 3× the slowest iteration so
    far, at least `min_deadline_s`."""

    def __init__(self, checkpointer, min_deadline_s: float = 60.0, slowest_factor: float = 3.0):
        self.checkpointer = checkpointer
        self.min_deadline_s, self.slowest_factor = min_deadline_s, slowest_factor
        self.received = None
        self._slowest_s = 0.0
        self._step_start = None
        self._watch = _SignalWatch(self._record, self.deadline_s)

    def _record(self, signum):
        global _pending_signal
        if self.received is None:
            self.received = _pending_signal = signum
            logger.warning(
                f"{signal.Signals(signum).name} received: saving a checkpoint after this iteration, then "
                "stopping (send it again to stop at once)"
            )

    def deadline_s(self) -> float:
        return max(self.min_deadline_s, self.slowest_factor * self._slowest_s)

    def before_train(self):
        global _pending_signal
        _pending_signal = None
        self._watch.start()

    def before_step(self):
        self._step_start = time.perf_counter()

    def after_step(self):
        if self._step_start is not None:
            self._slowest_s = max(self._slowest_s, time.perf_counter() - self._step_start)
        received = self.received
        if comm.get_world_size() > 1:
            received = max((r or 0) for r in comm.all_gather(received)) or None
        if received is None or self.trainer.iter + 1 >= self.trainer.max_iter:
            return  # the last iteration ends with model_final, and the final evaluation stops
        self.save_and_stop(received)
        comm.synchronize()

    def save_and_stop(self, signum: int):
        """Save `model_<iter>.pth` (the main process) and raise TrainingInterrupted."""
        name = f"model_{self.trainer.iter:07d}"
        self.checkpointer.save(name, iteration=self.trainer.iter)
        raise TrainingInterrupted(
            signum, self.trainer.iter, os.path.join(self.checkpointer.save_dir, name + ".pth")
        )

    def after_train(self):
        self.close()

    def close(self):
        """Restore the handlers this hook replaced; safe to call again."""
        global _pending_signal
        _pending_signal = None
        self._watch.stop()
