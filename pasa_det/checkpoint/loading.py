"""detectron2's DetectionCheckpointer with clear errors on bad checkpoints, safe
unpickling, and saves that never leave a partial file behind."""

import logging
import os
import pickle
import re

import torch
from detectron2.checkpoint import DetectionCheckpointer

from pasa_det.layers import PASA

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
    with a warning inside detectron2 before this check sees them.) Saves go to a temporary
    file renamed into place, so `last_checkpoint` only ever names complete files;
    `refuse_saves` stops all saving (the model state is not worth keeping).
    """

    def __init__(
        self,
        model,
        save_dir="",
        *,
        allow_partial=False,
        trust_pickle=False,
        require_filters=False,
        **kwargs,
    ):
        super().__init__(model, save_dir, **kwargs)
        self.allow_partial, self.trust_pickle = allow_partial, trust_pickle
        self.require_filters = require_filters
        self._refuse_saves = None

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
        if filename.endswith(".pkl"):
            if not self.trust_pickle:
                _check_plain_pickle(filename)
            return super()._load_file(filename)
        if filename.endswith(".pyth"):
            return super()._load_file(filename)
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

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
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
        # pixel_mean/std come from the config, not the checkpoint.
        loaded = (
            set(self.model.state_dict())
            - set(incompatible.missing_keys)
            - {"pixel_mean", "pixel_std"}
        )
        if not loaded:
            sample = ", ".join(sorted(incompatible.unexpected_keys)[:5])
            raise CheckpointError(
                f"no weight of the checkpoint matches the model (its keys look like: {sample}); it was made "
                "for another model. Set MODEL.WEIGHTS_ALLOW_PARTIAL True to start from scratch anyway."
            )
        return incompatible

    def _check_filters_loaded(self, missing_keys) -> None:
        """Evaluating PASA filters that the checkpoint did not hold would score filters
        that were never trained (weights of a `none` or `lpf` model, say)."""
        prefixes = tuple(
            f"{name}." for name, module in self.model.named_modules() if isinstance(module, PASA)
        )
        untrained = sorted(k for k in missing_keys if k.startswith(prefixes))
        if untrained:
            raise CheckpointError(
                f"the checkpoint holds no weights for {len(untrained)} of the model's PASA "
                f"filter parameters (e.g. {untrained[0]}): it was trained with another "
                "MODEL.ANTIALIAS.TYPE. Set MODEL.ANTIALIAS.TYPE to the one it was trained with, "
                "or MODEL.WEIGHTS_ALLOW_MISSING_FILTERS True to evaluate untrained filters anyway"
            )

    # ---- saving ----
    def refuse_saves(self, reason: str) -> None:
        """From now on `save` writes nothing and logs `reason`."""
        self._refuse_saves = reason

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        if self._refuse_saves:
            logger.warning(f"Not saving {name}.pth: {self._refuse_saves}")
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        self.logger.info(f"Saving checkpoint to {os.path.join(self.save_dir, basename)}")
        _write_atomically(os.path.join(self.save_dir, basename), lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        _write_atomically(
            os.path.join(self.save_dir, "last_checkpoint"),
            lambda f: f.write(last_filename_basename.encode()),
        )


def _write_atomically(path: str, write) -> None:
    """`write(file)` to a temporary file beside `path`, then rename it to `path`:
    a crash leaves the previous `path` (or none), never half of a new one."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(cfg, model, path=None):
    """Load `path` (default MODEL.WEIGHTS) into `model` for inference, checked as
    `SafeCheckpointer` checks it."""
    return SafeCheckpointer.from_config(cfg, model, for_inference=True).load(
        cfg.MODEL.WEIGHTS if path is None else path
    )
