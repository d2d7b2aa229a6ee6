"""The LazyConfig adapter's own parts: gradient clipping from train.clip_gradients, and the
dataset names it reads from either kind of loader."""

import pytest
import torch
from omegaconf import OmegaConf

from pasa_det.config import ConfigError
from pasa_det.engine.lazy import divergence_advice, lazy_datasets, with_gradient_clipping


def stepped(clip, grad=10.0):
    """A parameter at 0 after one SGD step (lr 1) on gradient `grad`, clipped as `clip` says."""
    weight = torch.nn.Parameter(torch.zeros(4))
    optimizer = with_gradient_clipping(torch.optim.SGD([weight], lr=1.0), OmegaConf.create(clip))
    weight.grad = torch.full((4,), grad)
    optimizer.step()
    return weight.detach()


def test_gradients_are_clipped_by_value_or_norm_only_when_enabled():
    assert torch.equal(stepped(dict(enabled=False, clip_value=0.5)), torch.full((4,), -10.0))
    value = stepped(dict(enabled=True, clip_type="value", clip_value=0.5))
    assert torch.equal(value, torch.full((4,), -0.5))
    norm = stepped(dict(enabled=True, clip_type="norm", clip_value=1.0, norm_type=2.0))
    assert torch.allclose(norm.norm(), torch.tensor(1.0))


@pytest.mark.parametrize(
    "clip, message",
    [
        (dict(enabled=True, clip_type="nrom"), r"clip_type is 'nrom'; use one of value, norm"),
        (dict(enabled=True, clip_value=0), r"clip_value must be a number > 0, got 0"),
    ],
)
def test_unusable_clipping_names_the_key(clip, message):
    with pytest.raises(ConfigError, match=r"train\.clip_gradients\." + message):
        stepped(clip)


def test_divergence_advice_offers_clipping_until_it_is_on():
    cfg = OmegaConf.create({"train": {"clip_gradients": {"enabled": False}}})
    assert "train.clip_gradients.enabled=True" in divergence_advice(cfg)
    cfg.train.clip_gradients.enabled = True
    assert "clip_gradients" not in divergence_advice(cfg)


def test_dataset_names_from_pasa_det_or_detectron2_loaders():
    cfg = OmegaConf.create(
        {
            "dataloader": {
                "train": {"names": ["a", "b"]},
                "test": {"dataset": {"names": "c", "filter_empty": False}},
            }
        }
    )
    assert lazy_datasets(cfg, "train") == ("dataloader.train.names", ["a", "b"])
    assert lazy_datasets(cfg, "test") == ("dataloader.test.dataset.names", ["c"])
    assert lazy_datasets(OmegaConf.create({"dataloader": {}}), "test") == (None, [])
