"""Fast paths for training: fused or chunked kernels that the model and loop may use instead of plain PyTorch."""

from babyllama.ops.linear_cross_entropy import LOSS_IMPLS, chunked_linear_cross_entropy, linear_cross_entropy

__all__ = ["LOSS_IMPLS", "chunked_linear_cross_entropy", "linear_cross_entropy"]
