"""A training data stream that resumes exactly where an interrupted run stopped.

detectron2's TrainingSampler restarts its shuffled stream from the beginning on
--resume, and augmentations draw from whatever state the worker RNGs are in, so a
resumed run sees other batches than an uninterrupted one would have. Here every
sample has a global position; the permutation of each epoch and the augmentation
of each sample are functions of (seed, position) only, so the stream can start at
any position and reproduce the same batches.
"""

import logging
import random
import signal

import numpy as np
import torch
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from torch.utils.data import Dataset, Sampler, get_worker_info

from .checks import BadImageError, DatasetError, map_naming_file

logger = logging.getLogger(__name__)


def derive_seed(*parts: int) -> int:
    """A 31-bit seed mixed from integers (stable across processes and runs)."""
    return int(
        np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0] & 0x7FFFFFFF
    )


class ResumableTrainingSampler(Sampler):
    """Infinite stream of `(position, index)`: epoch e is a permutation drawn from
    (seed, e); this process takes positions start + rank, start + rank + world, …"""

    def __init__(self, size: int, seed: int, shuffle: bool = True, start: int = 0):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.start = start  # global position of the first sample: a resumed run's
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()

    def _permutation(self, epoch: int):
        if not self.shuffle:
            return range(self.size)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self):
        position = self.start + self.rank
        epoch, order = None, None
        while True:
            if position // self.size != epoch:
                epoch = position // self.size
                order = self._permutation(epoch)
            yield position, order[position % self.size]
            position += self.world_size


class PositionSeededDataset(Dataset):
    """Maps `dicts[index]` with every RNG seeded from (seed, position), so a sample's
    augmentation does not depend on what ran before it. A sample the mapper drops
    (returns None for), or whose image cannot be read when `skip_bad_images` (the
    file and the reason are logged), is replaced by one drawn from the same seed;
    without it such an image raises BadImageError naming the file. `dicts` is best a
    serialized detectron2 DatasetFromList: its items come back as fresh copies, and
    workers do not blow up its memory by touching Python objects."""

    def __init__(self, dicts, mapper, seed: int, skip_bad_images: bool = False):
        self.dicts, self.mapper, self.seed, self.skip_bad_images = (
            dicts,
            mapper,
            seed,
            skip_bad_images,
        )
        self._worker_signals_set = False

    def __len__(self):
        return len(self.dicts)

    def _leave_ctrl_c_to_the_main_process(self):
        """Ctrl-C reaches data-loader workers too, which would exit and break the
        batch the main process still needs to finish its iteration and checkpoint."""
        if not self._worker_signals_set:
            self._worker_signals_set = True
            if get_worker_info() is not None:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __getitem__(self, key):
        self._leave_ctrl_c_to_the_main_process()
        position, index = key
        seed = derive_seed(self.seed, position)
        fallback = random.Random(seed)
        for _ in range(len(self.dicts)):
            seed_all_rng(seed)
            try:
                mapped = map_naming_file(self.mapper, self.dicts[index])
            except BadImageError as e:
                if not self.skip_bad_images:
                    raise
                logger.warning(f"skipped a training image: {e} (DATALOADER.SKIP_BAD_IMAGES)")
                mapped = None
            if mapped is not None:
                return mapped
            index = fallback.randrange(len(self.dicts))
        raise DatasetError(
            f"{len(self.dicts)} samples in a row of the {len(self.dicts)}-image training set "
            "could not be read or were dropped by the mapper (the warnings above name the "
            "unreadable files): fix or replace those files"
        )
