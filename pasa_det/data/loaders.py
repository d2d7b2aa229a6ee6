"""Training and test data loaders from plain arguments, as the yacs trainer and the
LazyConfigs build them: the training stream resumable at any position, malformed
annotations left out, unreadable test images named."""

from typing import Sequence

from detectron2.data import DatasetFromList, build_batch_data_loader, build_detection_test_loader
from detectron2.utils import comm

from .checks import FileNamingMapper, load_dataset_dicts, load_training_dicts
from .prepare import prepare_dataset
from .resumable import PositionSeededDataset, ResumableTrainingSampler


def build_resumable_train_loader(
    names: Sequence[str],
    mapper,
    total_batch_size: int,
    *,
    seed: int = -1,
    start: int = 0,
    num_workers: int = 0,
    filter_empty: bool = True,
    aspect_ratio_grouping: bool = True,
    skip_bad_images: bool = True,
    min_keypoints: int = 0,
    proposal_files=None,
):
    """Batches of `total_batch_size` images over all processes from the datasets `names`
    (prepared if embedded), mapped by `mapper`, starting at global sample position `start` (a resumed run's iteration
    times the batch size). The stream depends only on `seed` (-1: one drawn and shared
    by the processes) and the position, so a resumed run sees an uninterrupted run's
    batches."""
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        prepare_dataset(name)
    dicts = load_training_dicts(
        names, filter_empty=filter_empty, min_keypoints=min_keypoints, proposal_files=proposal_files
    )
    seed = seed if seed >= 0 else comm.shared_random_seed()
    sampler = ResumableTrainingSampler(len(dicts), seed, start=start)
    return build_batch_data_loader(
        PositionSeededDataset(DatasetFromList(dicts, copy=False), mapper, seed, skip_bad_images),
        sampler,
        total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
    )


def build_checked_test_loader(name: str, mapper, *, num_workers: int = 0, proposal_file=None):
    """detectron2's test loader of dataset `name`, checked like the training one; an
    unreadable image stops evaluation naming the file (skipping it would flatter the
    metrics)."""
    prepare_dataset(name)
    dicts = load_dataset_dicts(
        [name], filter_empty=False, proposal_files=[proposal_file] if proposal_file else None
    )
    return build_detection_test_loader(
        dicts, mapper=FileNamingMapper(mapper, name), num_workers=num_workers
    )
