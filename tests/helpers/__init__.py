"""Shared by the tests: paths, a tiny training run, the published formulation."""
