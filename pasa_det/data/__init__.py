"""Datasets: the embedded synthetic sets and checks for COCO / Cityscapes."""

from . import datasets  # noqa: F401  (registers the datasets)
