"""SOLVER.AMP: PASA Mask R-CNN trains under autocast on the CPU too, in bfloat16 without
loss scaling, and a bad PRECISION is a config error naming the key."""

import pytest
import torch
from detectron2.engine import HookBase

from pasa_det.config import ConfigError, load_config
from pasa_det.layers import PASA
from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.tiny_training import TINY, trainer


class RecordPasaDtypes(HookBase):
    """The input and output dtypes of every PASA layer, seen during training."""

    def __init__(self):
        self.dtypes = set()

    def before_train(self):
        for module in self.trainer.model.modules():
            if isinstance(module, PASA):
                module.register_forward_hook(
                    lambda m, inputs, out: self.dtypes.update((inputs[0].dtype, out.dtype))
                )


def test_bfloat16_training_runs_pasa_in_bfloat16_with_finite_losses_and_no_scaling(tmp_path):
    record = RecordPasaDtypes()
    t = trainer(
        tmp_path,
        "SOLVER.AMP.ENABLED",
        "True",
        "SOLVER.AMP.PRECISION",
        "bfloat16",
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        hooks=[record],
    )
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train()
    assert record.dtypes == {torch.bfloat16}
    assert not t.step.grad_scaler.is_enabled()
    history = t.storage.history("total_loss").values()
    assert len(history) == 4 and all(torch.isfinite(torch.tensor(v)) for v, _ in history)
    after = t.model.state_dict()
    assert all(after[k].dtype == before[k].dtype for k in before)  # master weights stay float32
    assert any(
        not torch.equal(after[k], before[k]) for k in before if before[k].is_floating_point()
    )


def test_without_amp_pasa_runs_in_float32(tmp_path):
    record = RecordPasaDtypes()
    trainer(
        tmp_path, "SOLVER.MAX_ITER", "1", "SOLVER.CHECKPOINT_PERIOD", "1000", hooks=[record]
    ).train()
    assert record.dtypes == {torch.float32}


def test_unknown_precision_names_the_key():
    with pytest.raises(
        ConfigError, match=r"SOLVER.AMP.PRECISION is 'fp8'; use one of float16, bfloat16"
    ):
        load_config(QUICK_INSTANCE, [*TINY, "SOLVER.AMP.PRECISION", "fp8"])
