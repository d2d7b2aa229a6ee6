"""Measuring models rather than running them: operator and model benchmarks, the
none/LPF/PASA comparison, and maps of PASA's predicted filters. Used by the tools; nothing
here is needed to train or run a model, and nothing below imports it."""
