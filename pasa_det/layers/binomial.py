"""The binomial filter: LPF's fixed filter, and the filter a fresh PASA starts from."""

import math

import torch


def binomial_kernel(kernel_size: int) -> torch.Tensor:
    """The normalised 2-D binomial filter: row k of Pascal's triangle, outer
    product with itself, divided by its sum (k=3: [1,2,1]x[1,2,1]/16)."""
    row = torch.tensor(
        [math.comb(kernel_size - 1, i) for i in range(kernel_size)], dtype=torch.float64
    )
    kernel = torch.outer(row, row)
    return (kernel / kernel.sum()).float()
