"""What `tools/lazyconfig_train_net.py` reads besides the model and data: SGD as
detectron2's yacs default builds it, and the run (`train`) with detectron2's keys plus
pasa_det's seed and divergence check."""

import torch
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

optimizer = L(torch.optim.SGD)(
    # `params.model` is set to the model before the optimizer is instantiated.
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
)

train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=90000,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    device="cuda",
    # pasa_det: the data stream and the model's draws follow from it (-1: drawn per run);
    # stop when the total loss exceeds this many times the first iteration's (0: off).
    seed=-1,
    divergence_loss_factor=1000.0,
    # Gradient clipping before each step, as detectron2's yacs SOLVER.CLIP_GRADIENTS:
    # clip_type "value" (each element) or "norm" (each parameter's norm_type-norm).
    clip_gradients=dict(enabled=False, clip_type="value", clip_value=1.0, norm_type=2.0),
)
