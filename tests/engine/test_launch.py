"""A multi-process job ends, promptly and as a whole, when one of its processes fails,
and says which rank failed and why."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch.distributed as dist
from detectron2.utils import comm

from pasa_det.engine import JobFailed, launch
from pasa_det.engine.interrupt import CheckpointOnSignal
from tests.helpers.paths import QUICK_INSTANCE, ROOT


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited already
        return f.read().split(") ")[1][0] != "Z"


def one_rank_raises(folder):
    with open(os.path.join(folder, f"pid{comm.get_rank()}"), "w") as f:
        f.write(str(os.getpid()))
    assert comm.get_local_rank() == comm.get_rank()  # the local process group is set up
    comm.synchronize()
    if comm.get_rank() == 1:
        raise ValueError("rank 1 broke")
    dist.barrier()  # waits for a peer that is gone
    time.sleep(600)


def test_a_failing_rank_ends_the_job_naming_it_and_its_error(tmp_path):
    start = time.monotonic()
    with pytest.raises(JobFailed) as failed:
        launch(one_rank_raises, 2, args=(str(tmp_path),))
    assert time.monotonic() - start < 60
    assert re.search(r"rank 1 \(pid \d+\) failed: ValueError: rank 1 broke", str(failed.value))
    assert failed.value.exit_code == 1
    assert not any(alive(int((tmp_path / f"pid{r}").read_text())) for r in (0, 1))


def blocked_in_a_collective(folder):
    if comm.get_rank() == 0:
        CheckpointOnSignal(checkpointer=None, min_deadline_s=2.0).before_train()
        with open(os.path.join(folder, "pid0"), "w") as f:
            f.write(str(os.getpid()))
        dist.barrier()  # rank 1 never comes: Python's signal handlers cannot run here
    else:
        time.sleep(600)


def test_sigterm_ends_a_process_blocked_in_a_collective(tmp_path):
    pid_file = tmp_path / "pid0"

    def terminate_rank_0():
        deadline = time.monotonic() + 300
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # into the barrier
        os.kill(int(pid_file.read_text()), signal.SIGTERM)

    threading.Thread(target=terminate_rank_0, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(JobFailed) as failed:
        launch(blocked_in_a_collective, 2, args=(str(tmp_path),))
    assert time.monotonic() - start < 30
    assert re.search(r"rank 0 \(pid \d+\) exited with code 143 \(SIGTERM\)", str(failed.value))


def start_two_process_training(tmp_path):
    """tools/train_net.py with 2 CPU processes, in its own process group, once its first
    periodic checkpoint (iteration 1) shows the loop and its hooks running: (the
    launcher's Popen, {rank: pid}, its stderr file)."""
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                os.path.join(ROOT, "tools", "train_net.py"),
                "--config-file",
                QUICK_INSTANCE,
                "--num-gpus",
                "2",
                "SOLVER.IMS_PER_BATCH",
                "2",
                "DATALOADER.NUM_WORKERS",
                "0",
                "SOLVER.MAX_ITER",
                "100000",
                "SOLVER.CHECKPOINT_PERIOD",
                "2",
                "DATASETS.TEST",
                "()",
                "OUTPUT_DIR",
                str(tmp_path / "out"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    started, deadline = tmp_path / "out" / "last_checkpoint", time.monotonic() + 300
    while not started.exists():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    pids = {int(r): int(p) for r, p in re.findall(r"rank (\d+): pid (\d+)", log.read_text())}
    return process, pids, log


def wait_or_kill(process, timeout):
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_killing_one_rank_of_a_training_run_ends_it_within_a_minute(tmp_path):
    process, pids, log = start_two_process_training(tmp_path)
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    code = wait_or_kill(process, 90)
    assert time.monotonic() - killed < 60
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert re.search(r"rank 1 \(pid \d+\) was killed by SIGKILL", text), text[-3000:]
    assert not any(alive(pid) for pid in pids.values())


@pytest.mark.parametrize("to_group", [False, True], ids=["launcher", "process group"])
def test_sigterm_stops_every_rank_with_one_checkpoint_and_exits_143(tmp_path, to_group):
    process, pids, log = start_two_process_training(tmp_path)
    if to_group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    code = wait_or_kill(process, 120)
    text = log.read_text()
    assert code == 128 + signal.SIGTERM, text[-3000:]
    saved = (tmp_path / "out" / "last_checkpoint").read_text()
    assert re.findall(r"stopped after iteration \d+ and saved (\S+);", text) == [
        str(tmp_path / "out" / saved)
    ]
    assert not any(alive(pid) for pid in pids.values())


def test_workers_whose_launcher_is_killed_checkpoint_and_exit(tmp_path):
    process, pids, log = start_two_process_training(tmp_path)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 120
    while any(alive(pid) for pid in pids.values()):
        assert time.monotonic() < deadline, "workers outlived their launcher"
        time.sleep(0.2)
    saved = (tmp_path / "out" / "last_checkpoint").read_text()
    text = log.read_text()  # the workers' stderr, which outlived the launcher
    assert re.findall(r"SIGINT received: stopped after iteration \d+ and saved (\S+);", text) == [
        str(tmp_path / "out" / saved)
    ], text[-3000:]
