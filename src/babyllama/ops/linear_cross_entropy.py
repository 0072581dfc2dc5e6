"""The output projection and cross-entropy in one step, without the full-batch fp32 logits.

The plain path computes logits = hidden @ W^T for every token (batch * seq * vocab values), casts them to fp32
and keeps them for the backward pass: at 15m/vocab 32000/batch 128 that is 4 GiB of fp32 logits plus their
gradient. `chunked_linear_cross_entropy` walks the rows in chunks; for each chunk it computes the logits, the
loss and, right away, the gradients with respect to the hidden states and the weight, then drops the logits.
Peak extra memory is one chunk of logits; the backward pass only scales the stored gradients.

`linear_cross_entropy(..., impl=)` picks an implementation: "standard" (plain PyTorch, the reference),
"chunked" (above, any device), "liger" (Liger Kernel's fused linear cross-entropy, Triton), "cce" (Apple's
cut-cross-entropy, Triton, exact gradients: no gradient filtering) or "fused" (liger, else cce, else chunked).
`z_loss` adds PaLM's auxiliary z * log(Z)^2 per token (it keeps the softmax normaliser near 1, guarding against
logit drift): only its gradient is added, so the returned value stays the cross-entropy, comparable across runs.
The Triton kernels need CUDA and their package; without them they fall back to chunked. "auto" chooses per device;
the choices are backed by bench/results/.

The Triton kernels run outside any torch.compile graph (`torch.compiler.disable`): compiling the model then
compiles its body up to the final norm, and the loss on the hidden states runs as one eager call after it. Inside
the graph Liger's `.item()` broke it in the middle (1.17M vs 2.57M tokens/s on an H200).
"""

from __future__ import annotations

import functools
import warnings
from typing import Optional

import torch
import torch.nn.functional as F

from babyllama.errors import BabyLlamaError, did_you_mean

LOSS_IMPLS = ("auto", "standard", "chunked", "liger", "cce", "fused")
# Kernels that run eagerly, outside a compiled graph, on the hidden states the compiled body returns.
OUTSIDE_COMPILE = ("liger", "cce")
# What `auto` picks on CUDA: the fastest in bench/gpu.sh (one line to change once measured).
CUDA_AUTO = "standard"
IGNORE_INDEX = -100


def default_chunk_rows(rows: int, vocab_size: int, device_type: str) -> int:
    """Rows per chunk: chunks of about 64M logits on GPU (big, efficient matmuls; at most 16 chunks, since a compiled
    graph unrolls the loop), about 1M on CPU (at most 64 chunks)."""
    budget, most = ((1 << 26), 16) if device_type == "cuda" else ((1 << 20), 64)
    chunks = min(most, max(1, -(-rows * vocab_size // budget)))
    return -(-rows // chunks)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (hidden @ weight^T) against targets; gradients computed in forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows: int, need_grad: bool, z_loss: float = 0.0):
        rows = hidden.shape[0]
        valid = targets != IGNORE_INDEX
        safe_targets = targets.masked_fill(~valid, 0)  # any in-range id; these rows are zeroed below
        loss_sum = torch.zeros((), device=hidden.device, dtype=torch.float32)
        grad_hidden = torch.empty_like(hidden) if need_grad else None
        # Accumulate the weight gradient in fp32 across chunks, whatever the compute dtype.
        grad_weight = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if need_grad else None
        for start in range(0, rows, chunk_rows):
            end = min(start + chunk_rows, rows)
            h = hidden[start:end]
            logits = (h @ weight.t()).float()
            target = safe_targets[start:end]
            picked = logits.gather(1, target[:, None]).squeeze(1)
            keep = valid[start:end]
            if not need_grad:
                loss_sum = loss_sum + ((torch.logsumexp(logits, dim=-1) - picked) * keep).sum()
                continue
            # d(loss_i)/d(logits_i) = softmax(logits_i) - onehot(target_i), zero for ignored rows. The softmax
            # is built in place from one exp pass, which also gives the log-sum-exp (the logits are not needed
            # again): fewer passes over the chunk than logsumexp followed by exp(logits - lse).
            peak = logits.amax(dim=1, keepdim=True)
            grad_logits = logits.sub_(peak).exp_()
            total = grad_logits.sum(dim=1, keepdim=True)
            lse = (peak + total.log()).squeeze(1)
            loss_sum = loss_sum + ((lse - picked) * keep).sum()
            if z_loss:  # d(z * lse^2)/d(logits) = 2 z lse * softmax: folded into the softmax's division, no extra pass
                grad_logits.mul_((1 + 2 * z_loss * lse[:, None]) / total)
            else:
                grad_logits.div_(total)
            grad_logits.scatter_add_(1, target[:, None], torch.full_like(picked[:, None], -1.0))
            # On the CPU the check is free and pretraining never ignores a target; on a GPU it would synchronise.
            if hidden.device.type != "cpu" or not bool(keep.all()):
                grad_logits.mul_(keep[:, None])
            grad_logits = grad_logits.to(hidden.dtype)
            grad_hidden[start:end] = grad_logits @ weight
            grad_weight += (grad_logits.t() @ h).float()
        scale = 1.0 / valid.sum().clamp(min=1).float()
        if need_grad:
            ctx.save_for_backward(grad_hidden, grad_weight, scale)
        ctx.weight_dtype = weight.dtype
        return loss_sum * scale

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight, scale = ctx.saved_tensors
        factor = grad_output * scale
        return ((grad_hidden * factor.to(grad_hidden.dtype)), (grad_weight * factor).to(ctx.weight_dtype),
                None, None, None, None)


def _compute_dtype(device_type: str, dtype: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 chunk_rows: Optional[int] = None, z_loss: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over targets != -100 of hidden (..., dim) @ weight (vocab, dim)^T, in chunks of rows.

    Under autocast the matmuls run in the autocast dtype (as nn.Linear would) and the softmax in fp32.
    """
    device_type = hidden.device.type
    dtype = _compute_dtype(device_type, hidden.dtype)
    hidden = hidden.reshape(-1, hidden.shape[-1]).to(dtype)
    weight_c = weight.to(dtype)  # a differentiable cast: the fp32 master weight still gets its gradient
    targets = targets.reshape(-1)
    if targets.shape[0] != hidden.shape[0]:
        raise BabyLlamaError(f"{targets.shape[0]} targets for {hidden.shape[0]} hidden states")
    rows = chunk_rows or default_chunk_rows(hidden.shape[0], weight.shape[0], device_type)
    need_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight_c.requires_grad)
    with torch.autocast(device_type, enabled=False):
        return _ChunkedLinearCrossEntropy.apply(hidden, weight_c, targets, rows, need_grad, float(z_loss))


def standard_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                  z_loss: float = 0.0) -> torch.Tensor:
    """The reference: full logits, cast to fp32, then PyTorch's cross-entropy (and the z-loss's gradient)."""
    logits = F.linear(hidden, weight).reshape(-1, weight.shape[0]).float()
    targets = targets.reshape(-1)
    loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    if z_loss:
        valid = targets != IGNORE_INDEX
        squared = (torch.logsumexp(logits, dim=-1).square() * valid).sum() / valid.sum().clamp(min=1)
        loss = loss + z_loss * (squared - squared.detach())  # the gradient only: the value stays the cross-entropy
    return loss


@functools.lru_cache(maxsize=1)
def _liger_loss():
    """Liger Kernel's fused linear cross-entropy module, or None when the package is not installed."""
    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX)


@functools.lru_cache(maxsize=1)
def _cce_loss():
    """cut-cross-entropy's linear_cross_entropy, or None when the package (or its Triton) is missing."""
    try:
        from cut_cross_entropy import linear_cross_entropy as cce
    except (ImportError, RuntimeError):
        return None
    return cce


def liger_available() -> bool:
    return torch.cuda.is_available() and _liger_loss() is not None


def cce_available() -> bool:
    return torch.cuda.is_available() and _cce_loss() is not None


def resolve_loss_impl(impl: str, device_type: str) -> str:
    """The implementation that will actually run for `impl` on this device (with the fallbacks applied)."""
    if impl not in LOSS_IMPLS:
        raise BabyLlamaError(f"unknown loss implementation '{impl}'{did_you_mean(impl, LOSS_IMPLS)}; "
                             f"choose one of {', '.join(LOSS_IMPLS)}")
    if impl == "auto":
        # Measured on one H200 (bench/results/gpu/): the standard loss is faster under torch.compile (15m: 2.57M vs
        # 2.31M tokens/s; 110m: 546K vs 528K) and already within 0.6x of transformers' peak memory at 15m.
        # On the 2-core CPU the two ran at the same speed (within noise), so the chunked one saves memory for free.
        # The eager fused kernels (liger/cce, outside the compiled graph) await bench/gpu.sh: set CUDA_AUTO then.
        impl = CUDA_AUTO if device_type == "cuda" else "chunked"
    if impl == "fused":
        if device_type == "cuda" and liger_available():
            return "liger"
        return "cce" if device_type == "cuda" and cce_available() else "chunked"
    if impl == "liger" and not (device_type == "cuda" and liger_available()):
        warnings.warn("Liger Kernel needs a CUDA GPU and the liger-kernel package; using the chunked loss instead",
                      stacklevel=3)
        return "chunked"
    if impl == "cce" and not (device_type == "cuda" and cce_available()):
        warnings.warn("cut-cross-entropy needs a CUDA GPU and the cut-cross-entropy package (with Triton); using the "
                      "chunked loss instead", stacklevel=3)
        return "chunked"
    return impl


@torch.compiler.disable
def _outside_compile(impl: str, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The Triton kernels, called eagerly: a compiled caller ends its graph at the hidden states."""
    dtype = _compute_dtype("cuda", hidden.dtype)
    hidden, weight, targets = hidden.reshape(-1, hidden.shape[-1]).to(dtype), weight.to(dtype), targets.reshape(-1)
    if impl == "liger":
        out = _liger_loss()(weight, hidden, targets)
        return (out[0] if isinstance(out, tuple) else out).float()
    # filter_eps=None: exact gradients (the default skips small softmax entries, an approximation).
    return _cce_loss()(hidden.contiguous(), weight, targets, ignore_index=IGNORE_INDEX, filter_eps=None).float()


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         impl: str = "auto", z_loss: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of the logits hidden @ weight^T against targets (-100 ignored), by `impl`; with `z_loss`,
    the gradient of z * mean(log(Z)^2) is added (the value is the cross-entropy alone)."""
    impl = resolve_loss_impl(impl, hidden.device.type)
    if z_loss and impl in OUTSIDE_COMPILE:
        # Neither Triton kernel hands back log(Z); the chunked loss gives the same gradient without full logits.
        impl = "chunked"
    if impl == "standard":
        return standard_linear_cross_entropy(hidden, weight, targets, z_loss)
    if impl in OUTSIDE_COMPILE:
        return _outside_compile(impl, hidden, weight, targets)
    return chunked_linear_cross_entropy(hidden, weight, targets, z_loss=z_loss)
