"""A Llama 2 model, readable in one sitting.

RMSNorm, rotary position embeddings, SwiGLU feed-forward, grouped-query attention through
`scaled_dot_product_attention`, optional tied embeddings and dropout. Parameter names and the
rotate-half rotary layout follow Hugging Face's `LlamaForCausalLM`, so export is a renaming-free
save and `transformers` computes the same logits from our weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from babyllama.config import ModelConfig
from babyllama.ops.linear_cross_entropy import linear_cross_entropy


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 and scale in the input dtype, exactly as transformers does.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (max_len, head_dim) in the rotate-half layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (batch, heads, time, head_dim); cos/sin broadcast to it."""
    return (x * cos + rotate_half(x) * sin).to(x.dtype)


@dataclass
class KVCache:
    """Preallocated keys and values for every layer: (layers, batch, kv_heads, max_len, head_dim)."""

    keys: torch.Tensor
    values: torch.Tensor

    @classmethod
    def empty(cls, config: ModelConfig, batch: int, max_len: int, device, dtype) -> "KVCache":
        shape = (config.n_layers, batch, config.n_kv_heads, max_len, config.head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int):
        super().__init__()
        self.layer_index = layer_index
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)
        self.dropout = config.dropout

    def forward(self, x, cos, sin, cache: Optional[KVCache] = None, start_pos: int = 0, mask=None):
        batch, time, _ = x.shape
        q = self.q_proj(x).view(batch, time, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, time, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, time, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        if cache is not None:
            end = start_pos + time
            cache.keys[self.layer_index, :, :, start_pos:end] = k
            cache.values[self.layer_index, :, :, start_pos:end] = v
            k = cache.keys[self.layer_index, :, :, :end]
            v = cache.values[self.layer_index, :, :, :end]

        gqa = self.n_kv_heads != self.n_heads
        if mask is None:
            # Training and first-chunk prefill are plainly causal; a single decoded token sees everything cached.
            causal = time > 1
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, enable_gqa=gqa)
        return self.o_proj(out.transpose(1, 2).reshape(batch, time, -1))


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.up_proj = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.down_proj = nn.Linear(config.hidden_dim, config.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, cache=None, start_pos=0, mask=None):
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), cos, sin, cache, start_pos, mask))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class Body(nn.Module):
    """The part Hugging Face calls `model`: embeddings, blocks, final norm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)


class Llama(nn.Module):
    # How forward(targets=...) computes the loss: auto, standard, chunked, liger, cce or fused (see babyllama.ops).
    loss_impl: str = "auto"
    z_loss: float = 0.0  # training only: evaluation and sampling always see the plain cross-entropy
    # Recompute each block's activations in the backward pass instead of storing them (training only).
    gradient_checkpointing: bool = False

    def __init__(self, config: ModelConfig, init_std: float = 0.02):
        super().__init__()
        config.validate()
        self.config = config
        self.model = Body(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.embed_dropout = nn.Dropout(config.dropout)
        cos, sin = rotary_tables(config.head_dim, config.max_seq_len, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters(init_std)

    def reset_parameters(self, std: float = 0.02) -> None:
        """GPT-2 style init (std 0.02); residual output projections scaled down by depth."""
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(param)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, mean=0.0, std=residual_std)
            else:
                nn.init.normal_(param, mean=0.0, std=std)

    def num_params(self, exclude_embeddings: bool = False) -> int:
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            total -= self.model.embed_tokens.weight.numel()
        return total

    def _rotary(self, positions: torch.Tensor):
        """cos/sin for positions of shape (time,) or (batch, time), broadcastable over heads."""
        if positions.max() >= self.config.max_seq_len:
            raise ValueError(f"position {int(positions.max())} is beyond the model's context ({self.config.max_seq_len})")
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        if positions.dim() == 2:
            return cos.unsqueeze(1), sin.unsqueeze(1)
        return cos, sin

    def hidden_states(self, input_ids, cache=None, start_pos=0, positions=None, mask=None):
        time = input_ids.shape[1]
        if positions is None:
            if start_pos + time > self.config.max_seq_len:
                raise ValueError(f"sequence of {start_pos + time} tokens is longer than the model's context "
                                 f"({self.config.max_seq_len})")
            cos = self.rope_cos[start_pos:start_pos + time]
            sin = self.rope_sin[start_pos:start_pos + time]
        else:
            cos, sin = self._rotary(positions)
        x = self.embed_dropout(self.model.embed_tokens(input_ids))
        recompute = self.gradient_checkpointing and self.training and cache is None and torch.is_grad_enabled()
        for block in self.model.layers:
            if recompute:
                # Non-reentrant: works with torch.compile, DDP/FSDP hooks and inputs that need no grad; the RNG
                # state is restored for the recomputation, so dropout masks match.
                x = checkpoint(block, x, cos, sin, None, start_pos, mask, use_reentrant=False)
            else:
                x = block(x, cos, sin, cache, start_pos, mask)
        return self.model.norm(x)

    def forward(self, input_ids: torch.Tensor, targets: Optional[torch.Tensor] = None, **decode) -> torch.Tensor:
        """Logits, or the mean cross-entropy over targets != -100 when targets are given."""
        hidden = self.hidden_states(input_ids, **decode)
        if targets is None:
            return self.lm_head(hidden)
        # The classifier and the loss together, by default without materialising fp32 logits (babyllama.ops).
        return linear_cross_entropy(hidden, self.lm_head.weight, targets, impl=self.loss_impl,
                                    z_loss=self.z_loss if self.training else 0.0)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N for the weights plus 12*L*H*Q*T for attention (PaLM appendix B)."""
        cfg = self.config
        return 6 * self.num_params(exclude_embeddings=not cfg.tie_embeddings) + \
            12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
