"""Starting the processes of a job, and ending all of them when one fails.

detectron2's launcher waits on its workers with torch's join, which stops the others
only once a failed worker has exited; a worker that hangs on its way out, or a survivor
blocked in a collective, keeps the job alive until the process-group timeout (30 min).
Here a failed worker reports its error and exits at once, the launcher stops the others
within a bounded grace period (SIGTERM, then SIGKILL), names every rank that failed and
why, and workers whose launcher is gone get SIGINT (torch's spawn asks Linux for it; under
torchrun this module does), which training answers with a checkpoint and a stop. The same launcher starts CPU jobs
(gloo; detectron2 0.6's launcher insists on CUDA) and GPU jobs (NCCL), and under torchrun
joins the process group from its environment.
"""

import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm

from pasa_det.detectron2_versions import create_local_process_group

# How long survivors get to exit on their own after one rank failed, and again after SIGTERM.
GRACE_S = 10.0
# detectron2's default: how long a collective may wait for its peers.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
_JOIN_POLL_S = 1.0

logger = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """A process of the job failed; the others were stopped. `exit_code` is what the
    launching process should exit with."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"))


def _free_local_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _interrupt_when_launcher_exits() -> None:
    """Ask Linux to send this process SIGINT when its launcher exits, so it does not run
    on unsupervised; training answers SIGINT with a checkpoint and a stop. torch's
    spawned workers have this already; torchrun starts its workers without it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    launcher = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGINT))
    if os.getppid() != launcher:  # it exited before the request was in place
        os.kill(os.getpid(), signal.SIGINT)


def _outcome(error: BaseException):
    """(exit code, one-line summary) of an exception that ends a worker."""
    if isinstance(error, SystemExit):
        if error.code is None or isinstance(error.code, int):
            return error.code or 0, f"exited with code {error.code}"
        return 1, str(error.code)  # sys.exit("message"): Python would print it and exit 1
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT, "interrupted (KeyboardInterrupt)"
    return 1, f"{type(error).__name__}: {error}"


def _run_reporting_failure(main_func, args, error_file=None):
    """Run `main_func(*args)`. If it fails, log the error, leave a one-line summary in
    `error_file` for the launcher and leave at once: interpreter shutdown can hang on
    threads or process groups that wait for peers which are gone."""
    try:
        main_func(*args)
    except BaseException as e:  # noqa: BLE001 - every failure must end this process promptly
        code, summary = _outcome(e)
        if code == 0:
            return
        summary = " ".join(summary.split())[:500]
        if not isinstance(e, (SystemExit, KeyboardInterrupt)):  # those have said why already
            traceback.print_exc()
            print(f"[rank {comm.get_rank()}] {summary}", file=sys.stderr)
        if error_file:
            with open(error_file, "w") as f:
                f.write(summary)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if dist.is_initialized():
        dist.destroy_process_group()


def _worker(local_rank, main_func, world_size, local_size, machine_rank, dist_url, args, error_dir):
    rank = machine_rank * local_size + local_rank
    use_gpu = torch.cuda.is_available()
    if use_gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        "nccl" if use_gpu else "gloo",
        init_method=dist_url,
        world_size=world_size,
        rank=rank,
        timeout=COLLECTIVE_TIMEOUT,
    )
    create_local_process_group(local_size)
    comm.synchronize()
    _run_reporting_failure(main_func, args, os.path.join(error_dir, f"rank{rank}.txt"))


def _describe(rank: int, process, error_dir: str) -> str:
    code = process.exitcode
    try:
        with open(os.path.join(error_dir, f"rank{rank}.txt")) as f:
            return f"rank {rank} (pid {process.pid}) failed: {f.read()}"
    except OSError:
        pass
    if code is not None and code < 0:
        return f"rank {rank} (pid {process.pid}) was killed by {_signal_name(-code)}"
    meaning = f" ({_signal_name(code - 128)})" if code is not None and code > 128 else ""
    return f"rank {rank} (pid {process.pid}) exited with code {code}{meaning}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _ForwardSignals:
    """While the launcher waits: SIGINT/SIGTERM sent to it alone reach the workers too
    (when sent to the whole process group, the workers ignore the repeat)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, processes):
        self.processes, self.received, self._previous = processes, None, {}

    def _forward(self, signum, frame):
        self.received = signum
        for p in self.processes:
            if p.is_alive():
                os.kill(p.pid, signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._forward) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _supervise(context, machine_rank: int, local_size: int, error_dir: str) -> None:
    processes = context.processes
    with _ForwardSignals(processes) as signals:
        try:
            while not context.join(timeout=_JOIN_POLL_S, grace_period=GRACE_S):
                pass
            return
        except (
            mp.ProcessRaisedException,
            mp.ProcessExitedException,
        ) as e:  # torch stopped the others
            first = e.error_index
    # The first failure first: the others' errors are often its consequences.
    order = [first] + [i for i in range(len(processes)) if i != first]
    failed = [
        (machine_rank * local_size + i, processes[i]) for i in order if processes[i].exitcode != 0
    ]
    codes = {p.exitcode for _, p in failed}
    if signals.received is not None and codes <= {128 + signals.received, -signals.received}:
        raise JobFailed(
            f"stopped by {signal.Signals(signals.received).name}", 128 + signals.received
        )
    lines = [_describe(r, p, error_dir) for r, p in failed]
    raise JobFailed(
        "a process of the job failed and the others were stopped:\n  " + "\n  ".join(lines), 1
    )


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=()):
    """Run `main_func(*args)` in every process of the job (detectron2's launch signature).

    - Under torchrun (multi-node rendezvous, SLURM wrappers): join the process group from
      the environment, NCCL with GPUs and gloo without.
    - One process: call it here.
    - Otherwise start `num_gpus_per_machine` processes on this machine (one per GPU, or
      CPU processes over gloo without GPUs). If one fails, the others are stopped and
      JobFailed names every failed rank and its error.
    """
    if launched_by_torchrun():
        local_rank, local_size = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        _interrupt_when_launcher_exits()
        dist.init_process_group(
            "nccl" if torch.cuda.is_available() else "gloo", timeout=COLLECTIVE_TIMEOUT
        )
        create_local_process_group(local_size)
        comm.synchronize()
        return _run_reporting_failure(main_func, args)
    world_size = num_gpus_per_machine * num_machines
    if world_size == 1:
        return main_func(*args)
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine}, but this machine has {torch.cuda.device_count()} GPUs"
        )
    if dist_url in (None, "auto"):
        if num_machines > 1:
            raise ValueError(
                "--dist-url auto works on one machine only; pass tcp://HOST:PORT of machine 0"
            )
        dist_url = _free_local_url()
    if not torch.cuda.is_available():
        print(
            f"No GPU: starting {num_gpus_per_machine} CPU processes (gloo) at {dist_url}",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="pasa_det-launch-") as error_dir:
        context = mp.start_processes(
            _worker,
            nprocs=num_gpus_per_machine,
            args=(
                main_func,
                world_size,
                num_gpus_per_machine,
                machine_rank,
                dist_url,
                args,
                error_dir,
            ),
            daemon=False,
            join=False,
        )
        first = machine_rank * num_gpus_per_machine
        pids = ", ".join(f"rank {first + i}: pid {p.pid}" for i, p in enumerate(context.processes))
        print(f"Started {pids}", file=sys.stderr, flush=True)
        _supervise(context, machine_rank, num_gpus_per_machine, error_dir)
    return None
