"""Running statistics of trainable norms made equal in every process after every step.

Under DDP each process updates its BatchNorm running statistics from its own batches
(detectron2 builds DDP with `broadcast_buffers=False`), so the processes' models differ:
the checkpoint holds the main process's statistics while each process evaluates its shard
with its own, and the AP printed after training is not the saved model's. Averaging the
statistics over the processes after each step keeps one model everywhere. Training is
unchanged (a norm in training mode normalises with batch statistics; the running ones
only accumulate), and because the average is taken at every step, a resumed run
averages exactly as an uninterrupted one and ends with the same weights.
"""

import torch
import torch.distributed as dist
from detectron2.engine import HookBase
from detectron2.layers import NaiveSyncBatchNorm
from detectron2.utils import comm


def per_process_statistics(model: torch.nn.Module):
    """The running mean and variance of every BatchNorm that keeps them per process
    (FrozenBN has none that change; synchronised norms compute them from every process's
    batch already)."""
    tensors = []
    for module in model.modules():
        if (
            isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
            and not isinstance(module, (torch.nn.SyncBatchNorm, NaiveSyncBatchNorm))
            and module.track_running_stats
        ):
            tensors += [module.running_mean, module.running_var]
    return tensors


def average_over_processes(tensors) -> None:
    """Replace each tensor by its mean over the processes, in one collective; every
    process ends with bit-identical values."""
    if comm.get_world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= comm.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


class EqualNormStatistics(HookBase):
    """After every step, and before the checkpointer and evaluation see the model: the
    per-process norm statistics averaged over the processes."""

    def __init__(self, model: torch.nn.Module):
        self.tensors = per_process_statistics(model)

    def after_step(self):
        with torch.no_grad():
            average_over_processes(self.tensors)
