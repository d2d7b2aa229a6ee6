"""Measuring models rather than running them: operator and model benchmarks, the
none/LPF/PASA comparison, maps of PASA's predicted filters, and the docs' tables rendered
from the result files these write. Used by the tools; nothing here is needed to train or
run a model, and nothing below imports it."""
