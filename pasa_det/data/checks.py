"""Dataset checks that turn bad files into errors naming them."""

import difflib
import itertools
import json
import logging
import os
from collections import defaultdict

from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.build import (
    filter_images_with_only_crowd_annotations,
    print_instances_class_histogram,
)
from detectron2.data.detection_utils import SizeMismatchError, check_metadata_consistency

from . import annotations

logger = logging.getLogger(__name__)
# What reading a missing, unreadable, truncated or mislabelled image raises
# (PIL: UnidentifiedImageError is an OSError, a broken PNG a SyntaxError).
IMAGE_ERRORS = (OSError, SyntaxError, SizeMismatchError)


class DatasetError(ValueError):
    """A dataset whose annotations or images cannot be used; the message names the file.

    Raised in a data-loader worker, torch re-raises it in the main process as the same
    class with the message "Caught … in DataLoader worker process N. Original Traceback
    …"; the worker's traceback is dropped again here, so the tools still print one line."""

    def __init__(self, message: str):
        raised_as = f"{type(self).__module__}.{type(self).__qualname__}: "
        if message.startswith("Caught ") and raised_as in message:
            message = message.rsplit(raised_as, 1)[1].rstrip("\n")
        super().__init__(message)


class MissingDatasetError(DatasetError, FileNotFoundError):
    """A dataset's files are not where its registration says."""


class BadImageError(DatasetError, OSError):
    """One sample's image (or label image) cannot be read."""


def map_naming_file(mapper, dataset_dict):
    """`mapper(dataset_dict)`, with an image that cannot be read raised as
    BadImageError naming the file (PIL's truncation errors name none)."""
    try:
        return mapper(dataset_dict)
    except IMAGE_ERRORS as e:
        files = ", ".join(
            dataset_dict[k] for k in ("file_name", "sem_seg_file_name") if k in dataset_dict
        )
        raise BadImageError(f"cannot read {files}: {type(e).__name__}: {e}") from e


class FileNamingMapper:
    """The evaluation mapper: an unreadable image stops evaluation, naming the file and the
    fix. Evaluation never skips one: its metrics would then describe a smaller set."""

    def __init__(self, mapper, dataset_name: str):
        self.mapper, self.dataset_name = mapper, dataset_name

    def __call__(self, dataset_dict):
        try:
            return map_naming_file(self.mapper, dataset_dict)
        except BadImageError as e:
            raise BadImageError(
                f"{e}. Evaluation does not skip images (the metrics would describe a smaller "
                f"set): replace the file, or remove it and its annotations from "
                f"{dataset_source(self.dataset_name)}"
            ) from e


def dataset_source(name: str) -> str:
    """The annotation file (or image folder) a dataset is read from, for messages."""
    meta = MetadataCatalog.get(name)
    return meta.get("json_file", None) or meta.get("image_dir", None) or name


def read_annotation_file(name: str) -> dict:
    """The parsed annotation file of COCO-format dataset `name`, or DatasetError naming it."""
    json_file = MetadataCatalog.get(name).json_file
    try:
        with open(json_file) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(
            f"dataset '{name}': annotation file {json_file} is not valid JSON ({e})"
        ) from None


def _json_error(names, error: Exception) -> DatasetError:
    """The annotation file among `names`' that is not valid JSON, or the error with the datasets named."""
    for name in names:
        json_file = MetadataCatalog.get(name).get("json_file", None)
        if json_file and os.path.isfile(json_file):
            try:
                read_annotation_file(name)
            except DatasetError as e:
                return e
    return DatasetError(
        f"cannot load dataset(s) {', '.join(names)}: {type(error).__name__}: {error}"
    )


def check_images_exist(dicts, names) -> None:
    """Every image the annotations reference exists. One directory listing per
    image folder, not one stat per image, so COCO's 118k files take ~0.1 s."""
    by_folder = defaultdict(list)
    for d in dicts:
        by_folder[os.path.dirname(d["file_name"])].append(os.path.basename(d["file_name"]))
    missing = []
    for folder, files in by_folder.items():
        present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        missing += [os.path.join(folder, f) for f in files if f not in present]
    if missing:
        sources = [dataset_source(n) for n in names]
        raise DatasetError(
            f"{len(missing)} of the {len(dicts)} images referenced by {', '.join(sources)} do not exist, e.g. "
            + ", ".join(missing[:3])
            + ". Is the image folder complete and the dataset registered with the right image root?"
        )


def load_dataset_dicts(names, **kwargs):
    """detectron2's get_detection_dataset_dicts, with an unparsable annotation file, a
    dataset without images and references to images that do not exist raised as DatasetError."""
    try:
        dicts = get_detection_dataset_dicts(names, **kwargs)
    except (ValueError, UnicodeDecodeError, TypeError, KeyError) as e:
        raise _json_error(list(names), e) from e
    except AssertionError as e:  # "Dataset 'x' is empty!", "No valid data found in x."
        sources = ", ".join(dataset_source(n) for n in names)
        raise DatasetError(f"cannot use dataset(s) {', '.join(names)} ({sources}): {e}") from e
    check_images_exist(dicts, names)
    return dicts


def _report_malformed(name: str, findings) -> None:
    """The warning naming `name`'s malformed annotations, from its annotation file where
    it has one (detectron2's loader has dropped bad polygons from the dicts unnamed): one
    more read of that file, in the main process only."""
    source = dataset_source(name)
    if not annotations.needs_report(name, source):
        return
    if MetadataCatalog.get(name).get("json_file", None):
        findings = annotations.clean_coco_dataset(read_annotation_file(name))
    annotations.report_once(name, source, findings)


def load_training_dicts(names, filter_empty=True, min_keypoints=0, proposal_files=None):
    """load_dataset_dicts for training, one dataset at a time: malformed annotations are
    left out (one warning per dataset names them) before images left without annotations
    are filtered (`filter_empty`), and a dataset with nothing to train on is an error
    naming it. detectron2 would train on such a set, or stop with "No valid data found"."""
    parts = []
    for i, name in enumerate(names):
        dicts = load_dataset_dicts(
            [name],
            filter_empty=False,
            min_keypoints=min_keypoints,
            proposal_files=[proposal_files[i]] if proposal_files else None,
            check_consistency=False,
        )
        if "annotations" in dicts[0]:  # instances (semantic sets have label images)
            _report_malformed(name, annotations.clean_dataset_dicts(dicts))
            if not annotations.count_usable(a for d in dicts for a in d["annotations"]):
                raise DatasetError(
                    f"dataset {name!r} ({dataset_source(name)}) has no annotations to train "
                    f"on: none of its {len(dicts)} images has a well-formed one that is not a "
                    f"crowd region. Add annotations, or remove {name!r} from DATASETS.TRAIN"
                )
        parts.append(dicts)
    dicts = list(itertools.chain.from_iterable(parts))
    if "annotations" in dicts[0]:
        if filter_empty:
            dicts = filter_images_with_only_crowd_annotations(dicts)
        classes = [MetadataCatalog.get(n).get("thing_classes", None) for n in names]
        if all(c is not None for c in classes):  # as detectron2 checks them, after cleaning
            try:
                check_metadata_consistency("thing_classes", names)
            except ValueError as e:
                raise DatasetError(f"DATASETS.TRAIN {', '.join(names)}: {e}") from e
            print_instances_class_histogram(dicts, classes[0])
    return dicts


def check_datasets_registered(cfg) -> None:
    """Every dataset DATASETS.TRAIN and TEST name is registered; checked before the model
    is built, with the closest registered names and how to register one."""
    for key in ("TRAIN", "TEST"):
        check_registered(
            f"DATASETS.{key}",
            cfg.DATASETS[key],
            lambda name: (
                "DATASETS.REGISTER_COCO "
                f"\"[('{name}', 'path/to/annotations.json', 'path/to/images')]\" (COCO format) "
                "or DATASETS.REGISTER_CITYSCAPES"
            ),
        )


def check_registered(key: str, names, how_to_register) -> None:
    """Every dataset of `names` (set by config key `key`) is registered, else an error with
    the closest registered names and `how_to_register(name)`."""
    registered = DatasetCatalog.list()
    for name in [names] if isinstance(names, str) else names:
        if name in registered:
            continue
        close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
        hint = f" Close registered names: {', '.join(close)}." if close else ""
        raise DatasetError(
            f"{key} names {name!r}, which is not registered.{hint} For your own data, add it "
            f"to the config: {how_to_register(name)} (see docs/GETTING_STARTED.md, 'Your own "
            "data')"
        )


def _class_counts(cfg):
    """[(class count the model predicts, the metadata field it is compared with, the config
    key that sets it)] for each head of the meta-architecture that has one."""
    arch = cfg.MODEL.META_ARCHITECTURE
    things = (cfg.MODEL.ROI_HEADS.NUM_CLASSES, "thing_classes", "MODEL.ROI_HEADS.NUM_CLASSES")
    stuff = (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, "stuff_classes", "MODEL.SEM_SEG_HEAD.NUM_CLASSES")
    counts = {
        "GeneralizedRCNN": [things],
        "PanopticFPN": [things, stuff],
        "SemanticSegmentor": [stuff],
        "RetinaNet": [
            (cfg.MODEL.RETINANET.NUM_CLASSES, "thing_classes", "MODEL.RETINANET.NUM_CLASSES")
        ],
    }
    return counts.get(arch, [])


YACS_SWITCH = "DATASETS.CHECK_NUM_CLASSES False"
LAZY_SWITCH = "dataloader.check_num_classes=False"
# Where a LazyConfig's model holds its class counts (detectron2's common/models), and the
# metadata field each is compared with; RetinaNet's is at the top.
LAZY_CLASS_COUNTS = (
    ("roi_heads.num_classes", "thing_classes"),
    ("sem_seg_head.num_classes", "stuff_classes"),
    ("num_classes", "thing_classes"),
)


def _lazy_class_counts(model_cfg):
    counts = []
    for path, field in LAZY_CLASS_COUNTS:
        node = model_cfg
        for part in path.split("."):
            node = node.get(part, None) if hasattr(node, "get") else None
        if isinstance(node, int):
            counts.append((node, field, f"model.{path}"))
    return counts


def check_num_classes(cfg, names) -> None:
    """The model predicts as many classes as each dataset in `names` has, where its
    metadata already holds them (COCO-format sets: once read or registered from the
    config). A mismatch would train with some classes as background, or with unused
    outputs, and no other message."""
    if not cfg.DATASETS.CHECK_NUM_CLASSES:
        return
    for num_classes, field, key in _class_counts(cfg):
        _check_count(num_classes, field, key, names, f"set {key} {{}}", YACS_SWITCH)


def check_lazy_num_classes(cfg, names) -> None:
    """check_num_classes for a LazyConfig: its `model`'s class counts; off with
    `dataloader.check_num_classes=False`."""
    if not cfg.dataloader.get("check_num_classes", True):
        return
    for num_classes, field, key in _lazy_class_counts(cfg.model):
        _check_count(num_classes, field, key, names, f"{key}={{}}", LAZY_SWITCH)


def _check_count(num_classes, field, key, names, set_count: str, switch_off: str) -> None:
    """`set_count`.format(n): how to make `key` n; `switch_off`: how to skip the check."""
    for name in names:
        classes = MetadataCatalog.get(name).get(field, None)
        if classes is None or len(classes) == num_classes:
            continue
        shown = ", ".join(classes[:6]) + (", …" if len(classes) > 6 else "")
        raise DatasetError(
            f"{key} is {num_classes} but dataset {name!r} has {len(classes)} classes "
            f"({shown}): {set_count.format(len(classes))}, or {switch_off} to use a different "
            "count on purpose"
        )
