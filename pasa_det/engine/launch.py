"""Starting processes: detectron2's launcher for GPUs, plus what detectron2 0.6's
cannot do: several CPU processes over gloo, and processes started by torchrun."""
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.utils import comm


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"))


def _free_local_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _set_local_process_group(world_size: int, local_size: int, machine_rank: int) -> None:
    """detectron2's comm.get_local_rank() reads this group; every rank must create all of them."""
    for machine in range(world_size // local_size):
        group = dist.new_group(list(range(machine * local_size, (machine + 1) * local_size)))
        if machine == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def _cpu_worker(local_rank, main_func, world_size, local_size, machine_rank, dist_url, args):
    rank = machine_rank * local_size + local_rank
    dist.init_process_group("gloo", init_method=dist_url, world_size=world_size, rank=rank)
    _set_local_process_group(world_size, local_size, machine_rank)
    comm.synchronize()
    main_func(*args)


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=()):
    """Run `main_func(*args)` in every process of the job.

    - Under torchrun (multi-node rendezvous, SLURM wrappers): join the process
      group from the environment, NCCL with GPUs and gloo without.
    - Without GPUs and with more than one process: start `num_gpus_per_machine`
      CPU processes per machine, talking over gloo.
    - Otherwise detectron2's own launcher.
    """
    if launched_by_torchrun():
        local_rank, local_size = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        _set_local_process_group(dist.get_world_size(), local_size, dist.get_rank() // local_size)
        comm.synchronize()
        return main_func(*args)
    world_size = num_gpus_per_machine * num_machines
    if world_size > 1 and not torch.cuda.is_available():
        if dist_url in (None, "auto"):
            if num_machines > 1:
                raise ValueError("--dist-url auto works on one machine only; pass tcp://HOST:PORT of machine 0")
            dist_url = _free_local_url()
        print(f"No GPU: starting {num_gpus_per_machine} CPU processes (gloo) at {dist_url}", file=sys.stderr)
        mp.start_processes(
            _cpu_worker,
            nprocs=num_gpus_per_machine,
            args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args),
            daemon=False,
        )
        return None
    return detectron2_launch(
        main_func, num_gpus_per_machine, num_machines=num_machines, machine_rank=machine_rank,
        dist_url=dist_url or "auto", args=args,
    )
