"""PASA's fused kernels (C++ on the CPU, Triton on CUDA) and the torch operator that
dispatches to them, so that autograd, dynamo, torch.export and AOTAutograd see one op."""

from .ops import native_available, softmax_subsample, triton_available

__all__ = ["native_available", "softmax_subsample", "triton_available"]
