"""A tiny training run of the quick PASA Mask R-CNN config (64-px images, 4 iterations of
2), built in this process: shared by the tests that train (not a test module)."""

from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from pasa_det.config import load_config
from pasa_det.engine import Trainer
from tests.helpers.paths import QUICK_INSTANCE

# fmt: off
TINY = [
    "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "SOLVER.WARMUP_ITERS", "2",
    "DATASETS.TEST", "()", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "SOLVER.MAX_ITER", "4",
]
# fmt: on


def trainer(output_dir, *opts, resume=False, hooks=()):
    """A Trainer of QUICK_INSTANCE + TINY + `opts`, seeded as tools/train_net.py seeds (the same
    initial weights every run), with `hooks` added and resumed or loaded."""
    cfg = load_config(QUICK_INSTANCE, [*TINY, "OUTPUT_DIR", str(output_dir), *opts])
    cfg.freeze()
    seed_all_rng(cfg.SEED)
    t = Trainer(cfg)
    t.register_hooks(list(hooks))
    t.resume_or_load(resume=resume)
    return t


class At(HookBase):
    """Runs `action(trainer)` before iteration `iteration`."""

    def __init__(self, iteration, action):
        self.iteration, self.action = iteration, action

    def before_step(self):
        if self.trainer.iter == self.iteration:
            self.action(self.trainer)
