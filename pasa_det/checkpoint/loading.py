"""detectron2's DetectionCheckpointer with clear errors on bad checkpoints, safe
unpickling, and saves that never leave a partial file behind."""

import contextlib
import logging
import os
import pickle
import re
import shutil

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from pasa_det.layers import PASA

from .pretrained import torchvision_layout

logger = logging.getLogger(__name__)

# What a detectron2 / Detectron model-zoo .pkl may reference: numpy arrays, their dtypes
# and plain containers. Anything else would run code while unpickling.
_PLAIN_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}
_TRUST_HINT = (
    "If you trust where the file comes from, load it anyway with MODEL.WEIGHTS_TRUST_PICKLE True "
    "(unpickling can run arbitrary code), or re-save just its tensors: "
    "torch.save(torch.load(path, weights_only=False)['model'], 'clean.pth')."
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be (or should not be) loaded into the model."""


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _PLAIN_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"Unsupported global: {module}.{name}")
        return super().find_class(module, name)


def _check_plain_pickle(path: str) -> None:
    """Unpickle `path` with only numpy arrays and containers allowed, so the
    unrestricted pickle.load detectron2 does next cannot run code."""
    with open(path, "rb") as f:
        try:
            _PlainDataUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            if "Unsupported global" in str(e):
                raise CheckpointError(
                    f"{path}: refused to unpickle: it references {str(e).split(': ', 1)[1]}, "
                    f"which is neither a tensor, a numpy array nor a plain container. {_TRUST_HINT}"
                ) from None
            raise CheckpointError(f"{path}: truncated or not a pickle file ({e})") from None
        except (EOFError, ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(
                f"{path}: truncated or not a pickle file ({type(e).__name__}: {e})"
            ) from None


class SafeCheckpointer(DetectionCheckpointer):
    """Loads with `weights_only` (unless `trust_pickle`), explains missing,
    truncated and refused files, and refuses a checkpoint of another architecture
    unless `allow_partial`.

    Another architecture, as opposed to a backbone-only checkpoint (detectron2's
    ImageNet R-50.pkl, converted PASA backbones): a backbone checkpoint lacks the
    heads' keys, which is fine; but keys present in both the checkpoint and the
    model with different shapes, or no key of the checkpoint matching the model at
    all, mean the weights were made for another model. (Checkpoints matched by
    detectron2's name heuristics, like R-50.pkl, have mismatched shapes dropped
    with a warning inside detectron2 before this check sees them.) A torchvision-layout
    ResNet (torchvision's, timm's, the PASA authors') is refused with the command that
    converts it. Saves go to a temporary file renamed into place, so `last_checkpoint` only
    ever names complete files, and a failed write (a full disk) is a CheckpointError that
    says what survived; `refuse_saves` stops all saving (the model state is not worth keeping).
    """

    def __init__(
        self,
        model,
        save_dir="",
        *,
        allow_partial=False,
        trust_pickle=False,
        require_filters=False,
        filter_init="lpf",
        **kwargs,
    ):
        """`filter_init`: how the model's PASA filters start (MODEL.ANTIALIAS.INIT), to say
        what becomes of the filters a checkpoint lacks."""
        super().__init__(model, save_dir, **kwargs)
        self.allow_partial, self.trust_pickle = allow_partial, trust_pickle
        self.require_filters, self.filter_init = require_filters, filter_init
        self._refuse_saves = None
        self.path_manager = AtomicWrites(self.path_manager)

    @classmethod
    def from_config(cls, cfg, model, save_dir="", *, for_inference=False, **kwargs):
        """`for_inference`: evaluation or the demo, where weights that hold none of the
        model's PASA filters are refused unless MODEL.WEIGHTS_ALLOW_MISSING_FILTERS."""
        return cls(
            model,
            save_dir,
            allow_partial=cfg.MODEL.WEIGHTS_ALLOW_PARTIAL,
            trust_pickle=cfg.MODEL.WEIGHTS_TRUST_PICKLE,
            require_filters=for_inference and not cfg.MODEL.WEIGHTS_ALLOW_MISSING_FILTERS,
            filter_init=cfg.MODEL.ANTIALIAS.INIT,
            **kwargs,
        )

    # ---- loading ----
    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise CheckpointError(
                f"{path}: no such checkpoint file (MODEL.WEIGHTS, or the file last_checkpoint names)"
            )
        try:
            return super().load(path, *args, **kwargs)
        except OSError as e:  # urllib's URLError included: a URL that cannot be fetched
            if "://" not in path:
                raise
            reason = getattr(e, "reason", None) or e
            raise CheckpointError(
                f"MODEL.WEIGHTS {path} cannot be downloaded ({reason}). Without internet access, "
                "download it where there is, then set MODEL.WEIGHTS to the local file (or to "
                '"" to start from scratch)'
            ) from None

    def _load_file(self, filename):
        if filename.endswith((".pkl", ".pyth")):
            if filename.endswith(".pkl") and not self.trust_pickle:
                _check_plain_pickle(filename)
            checkpoint = super()._load_file(filename)
        else:
            checkpoint = self._load_torch_file(filename)
        self._check_weights(filename, checkpoint["model"])
        return checkpoint

    def _load_torch_file(self, filename):
        try:
            loaded = torch.load(filename, map_location="cpu", weights_only=not self.trust_pickle)
        except pickle.UnpicklingError as e:
            refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
            if refused:
                raise CheckpointError(
                    f"{filename}: torch.load(weights_only=True) refused it: it pickles {refused.group(1)}, "
                    f"an object that is not a tensor or a plain container. {_TRUST_HINT}"
                ) from None
            raise CheckpointError(
                f"{filename}: truncated or corrupted checkpoint ({str(e).splitlines()[0]})"
            ) from None
        except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
            raise CheckpointError(
                f"{filename}: truncated, corrupted or not a torch checkpoint ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''})"
            ) from None
        if not isinstance(loaded, dict):
            raise CheckpointError(f"{filename}: holds a {type(loaded).__name__}, not a state dict")
        return loaded if "model" in loaded else {"model": loaded}

    def _check_weights(self, filename, weights) -> None:
        """Refuse a torchvision-layout ResNet: its names match no detectron2 model, so it
        would load nothing and training would silently start from scratch (refused even
        with MODEL.WEIGHTS_ALLOW_PARTIAL: MODEL.WEIGHTS "" is the way to start from scratch);
        and name what is no tensor, where fvcore's traceback would not name the file."""
        fmt = torchvision_layout(weights)
        if fmt is not None and not set(weights) & set(self.model.state_dict()):
            what = {
                "seed": "an ImageNet checkpoint in the PASA authors' layout "
                "({'state_dict': {'module.conv1.weight', …}})",
                "torchvision": "a torchvision/timm ResNet state dict (conv1, bn1, layer1-4, fc)",
            }[fmt]
            converted = (
                re.sub(r"(\.pth)?(\.tar)?$|\.pt$", "", filename, count=1) + "-detectron2.pkl"
            )
            raise CheckpointError(
                f"{filename} holds {what}, whose names match no detectron2 model: convert it "
                f"with `python tools/convert_pretrained.py {filename} {converted}` and train with "
                f"MODEL.WEIGHTS {converted}, the MODEL.* values the converter prints, and a "
                "config built on configs/Base-RCNN-FPN-Torchvision-Weights.yaml (RGB input, "
                "ImageNet mean/std, stride in the 3x3)"
            )
        odd = next(
            (k for k, v in weights.items() if not isinstance(v, (torch.Tensor, np.ndarray))), None
        )
        if odd is not None:
            raise CheckpointError(
                f"{filename}: not a state dict of tensors: {odd!r} holds a "
                f"{type(weights[odd]).__name__} (a training checkpoint of another framework? "
                "save just its model's state_dict)"
            )

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        # Loaded: what the checkpoint set, not pixel_mean/std (the config's; detectron2 drops
        # them from missing_keys) nor BN step counters, which say nothing about the weights.
        missing = set(incompatible.missing_keys)
        loaded = [
            k
            for k in self.model.state_dict()
            if k not in missing
            and k not in ("pixel_mean", "pixel_std")
            and not k.endswith(".num_batches_tracked")
        ]
        # BN step counters change no output here (detectron2's norms use a fixed momentum).
        # Checkpoints made for 0.6's FrozenBatchNorm2d (and converted ones) carry none, while
        # detectron2 main keeps a BN's counter when it freezes it: not worth a warning.
        incompatible.missing_keys[:] = [
            k for k in incompatible.missing_keys if not k.endswith(".num_batches_tracked")
        ]
        if self.require_filters:
            self._check_filters_loaded(incompatible.missing_keys)
        if self.allow_partial:
            return incompatible
        if incompatible.incorrect_shapes:
            lines = "\n".join(
                f"  {k}: {a} in the checkpoint, {b} in the model"
                for k, a, b in incompatible.incorrect_shapes
            )
            raise CheckpointError(
                f"the checkpoint was made for another architecture: {len(incompatible.incorrect_shapes)} of "
                f"its weights have other shapes than the model's:\n{lines}\nCheck MODEL.* (e.g. "
                "ROI_HEADS.NUM_CLASSES, RESNETS.DEPTH, ANTIALIAS.*) or, to load the rest and keep these freshly "
                "initialised (fine-tuning with other classes), set MODEL.WEIGHTS_ALLOW_PARTIAL True."
            )
        if not loaded:
            sample = ", ".join(sorted(incompatible.unexpected_keys)[:5])
            raise CheckpointError(
                f"no weight of the checkpoint matches the model (its keys look like: {sample}); it was made "
                "for another model. Set MODEL.WEIGHTS_ALLOW_PARTIAL True to start from scratch anyway."
            )
        return incompatible

    def _missing_filters(self, missing_keys) -> list:
        """The missing keys that belong to the model's PASA filters, sorted."""
        prefixes = tuple(
            f"{name}." for name, module in self.model.named_modules() if isinstance(module, PASA)
        )
        return sorted(k for k in missing_keys if k.startswith(prefixes))

    def _check_filters_loaded(self, missing_keys) -> None:
        """Evaluating PASA filters that the checkpoint did not hold would score filters
        that were never trained (weights of a `none` or `lpf` model, say)."""
        untrained = self._missing_filters(missing_keys)
        if untrained:
            raise CheckpointError(
                f"the checkpoint holds no weights for {len(untrained)} of the model's PASA "
                f"filter parameters (e.g. {untrained[0]}): it was trained with another "
                "MODEL.ANTIALIAS.TYPE. Set MODEL.ANTIALIAS.TYPE to the one it was trained with, "
                "or MODEL.WEIGHTS_ALLOW_MISSING_FILTERS True to evaluate untrained filters anyway"
            )

    def _log_incompatible_keys(self, incompatible) -> None:
        """After detectron2's list of missing keys, say that missing PASA filters are expected
        (ImageNet weights without PASA, e.g. R-50.pkl) and how they start; only reached
        where they are allowed (training, or MODEL.WEIGHTS_ALLOW_MISSING_FILTERS), as
        `_check_filters_loaded` refused them before."""
        super()._log_incompatible_keys(incompatible)
        untrained = self._missing_filters(incompatible.missing_keys)
        if untrained:
            logger.info(
                f"The {len(untrained)} PASA filter tensors the checkpoint lacks (e.g. "
                f"{untrained[0]}) are expected for ImageNet weights without PASA filters: they "
                f"start as MODEL.ANTIALIAS.INIT {self.filter_init} sets them"
            )

    # ---- saving ----
    def refuse_saves(self, reason: str) -> None:
        """From now on `save` writes nothing and logs `reason`."""
        self._refuse_saves = reason

    def save(self, name, **kwargs):
        if self._refuse_saves:
            logger.warning(f"Not saving {name}.pth: {self._refuse_saves}")
            return
        try:
            super().save(name, **kwargs)
        except (OSError, RuntimeError) as e:
            raise self._write_error(os.path.join(self.save_dir, f"{name}.pth"), e) from None

    def tag_last_checkpoint(self, last_filename_basename):
        try:
            super().tag_last_checkpoint(last_filename_basename)
        except (OSError, RuntimeError) as e:
            raise self._write_error(os.path.join(self.save_dir, "last_checkpoint"), e) from None

    def _write_error(self, path: str, error: BaseException) -> "CheckpointError":
        """A failed write (a full disk, say; torch reports it as a RuntimeError of its
        stream writer) told in one line: the file, why, what survived and what to do."""
        if isinstance(error, CheckpointError):
            return error
        try:
            usage = shutil.disk_usage(os.path.dirname(path) or ".")
            free = f" ({_size(usage.free)} free on that filesystem)"
        except OSError:
            free = ""
        previous = self.get_checkpoint_file() if self.has_checkpoint() else ""
        if previous:
            kept = (
                f"The previous checkpoint, {previous}, is intact and last_checkpoint still names it"
            )
            then = "run the same command with --resume to continue from it"
        else:
            kept = "No checkpoint was saved before it (last_checkpoint names none yet)"
            then = "run the same command again"
        return CheckpointError(
            f"cannot write {path}: {_write_failure_reason(error)}{free}. {kept}. Free space "
            "there, or move OUTPUT_DIR's files to a disk with room and set OUTPUT_DIR to "
            f"it, then {then}"
        )


class AtomicWrites:
    """A checkpointer's `path_manager` whose files opened for writing are written to a
    temporary file beside them and renamed into place when closed: a crash leaves the
    previous file (or none), never half of a new one. Everything else is `paths`'."""

    def __init__(self, paths):
        self._paths = paths

    def __getattr__(self, name):
        return getattr(self._paths, name)

    @contextlib.contextmanager
    def open(self, path: str, mode: str = "r", **kwargs):
        if "w" not in mode or "://" in path:
            with self._paths.open(path, mode, **kwargs) as f:
                yield f
            return
        tmp = f"{path}.tmp"
        try:
            with open(tmp, mode, **kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _write_failure_reason(error: BaseException) -> str:
    """The OS's reason ("no space left on device"), also where torch's RuntimeError
    wraps it, else the error's first line."""
    seen = set()
    cause = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2**30:.1f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.0f} MiB"


def load_checkpoint(cfg, model, path=None):
    """Load `path` (default MODEL.WEIGHTS) into `model` for inference, checked as
    `SafeCheckpointer` checks it."""
    return SafeCheckpointer.from_config(cfg, model, for_inference=True).load(
        cfg.MODEL.WEIGHTS if path is None else path
    )
