"""Helpers for the tools (benchmarks); nothing here is needed to train or run a model."""
