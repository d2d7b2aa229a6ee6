"""Dataset checks that turn bad files into errors naming them."""

import json
import logging
import os
from collections import defaultdict

from detectron2.data import MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.detection_utils import SizeMismatchError

logger = logging.getLogger(__name__)
# What reading a missing, unreadable, truncated or mislabelled image raises
# (PIL: UnidentifiedImageError is an OSError, a broken PNG a SyntaxError).
IMAGE_ERRORS = (OSError, SyntaxError, SizeMismatchError)


class DatasetError(ValueError):
    """A dataset whose annotations or images cannot be used; the message names the file."""


class MissingDatasetError(DatasetError, FileNotFoundError):
    """A dataset's files are not where its registration says."""


class BadImageError(OSError):
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
    """A mapper whose errors on unreadable images name the file (evaluation: no skipping)."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, dataset_dict):
        return map_naming_file(self.mapper, dataset_dict)


def _json_error(names, error: Exception) -> DatasetError:
    """The annotation file among `names`' that is not valid JSON, or the error with the datasets named."""
    for name in names:
        json_file = MetadataCatalog.get(name).get("json_file", None)
        if json_file and os.path.isfile(json_file):
            try:
                with open(json_file) as f:
                    json.load(f)
            except (ValueError, UnicodeDecodeError) as e:
                return DatasetError(
                    f"dataset '{name}': annotation file {json_file} is not valid JSON ({e})"
                )
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
        sources = [MetadataCatalog.get(n).get("json_file", n) for n in names]
        raise DatasetError(
            f"{len(missing)} of the {len(dicts)} images referenced by {', '.join(sources)} do not exist, e.g. "
            + ", ".join(missing[:3])
            + ". Is the image folder complete and the dataset registered with the right image root?"
        )


def load_dataset_dicts(names, **kwargs):
    """detectron2's get_detection_dataset_dicts, with an unparsable annotation
    file and references to images that do not exist raised as DatasetError."""
    try:
        dicts = get_detection_dataset_dicts(names, **kwargs)
    except (ValueError, UnicodeDecodeError, TypeError, KeyError) as e:
        raise _json_error(list(names), e) from e
    check_images_exist(dicts, names)
    return dicts
