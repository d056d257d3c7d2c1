"""The toy Transformer of Fig. 2: attention only, for in-context linear regression (von Oswald et al. 2023).

Tokens are e_i = [x_i, y_i] for the context and [x_q, 0] for the query; the model embeds them linearly, applies
`n_layer` residual attention layers (softmax, or linear attention as an option) in which every token attends to
the context tokens, and reads the prediction of y_q linearly from the query's residual stream.
Weights are stored in GPT-2's layout (x @ W, heads side by side along columns) so that `wdrank.heads` splits them
per head: `layers.<l>.attn.qkv` is [W_Q | W_K | W_V] of shape (d_model, 3 * n_head * d_head), `layers.<l>.attn.out`
is W_O of shape (n_head * d_head, d_model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ToyShape:
    x_dim: int  # dimension of the regression inputs x
    n_layer: int
    d_model: int
    n_head: int
    d_head: int
    softmax: bool = True  # False: linear attention (scores used as weights, divided by the context length)

    def config(self) -> dict:
        """What `wdrank.heads` needs to split the weights (stored next to checkpoints)."""
        return {"model_type": "toy", **asdict(self)}


class ToyAttention(nn.Module):
    def __init__(self, shape: ToyShape):
        super().__init__()
        self.shape = shape
        inner = shape.n_head * shape.d_head
        self.qkv = nn.Parameter(torch.randn(shape.d_model, 3 * inner) / math.sqrt(shape.d_model))
        self.out = nn.Parameter(torch.randn(inner, shape.d_model) / math.sqrt(inner))

    def forward(self, x: torch.Tensor, n_context: int) -> torch.Tensor:
        batch, tokens, _ = x.shape
        h, r = self.shape.n_head, self.shape.d_head
        q, k, v = (x @ self.qkv).split(h * r, dim=-1)  # each (B, T, H*r)
        q, k, v = (t.view(batch, tokens, h, r).transpose(1, 2) for t in (q, k, v))  # (B, H, T, r)
        k, v = k[:, :, :n_context], v[:, :, :n_context]  # every token attends to the context only
        scores = q @ k.transpose(-1, -2) / math.sqrt(r)  # (B, H, T, N)
        weights = scores.softmax(-1) if self.shape.softmax else scores / n_context
        mixed = (weights @ v).transpose(1, 2).reshape(batch, tokens, h * r)  # (B, T, H*r)
        return mixed @ self.out


class ToyLayer(nn.Module):
    def __init__(self, shape: ToyShape):
        super().__init__()
        self.attn = ToyAttention(shape)

    def forward(self, x: torch.Tensor, n_context: int) -> torch.Tensor:
        return x + self.attn(x, n_context)


class ToyTransformer(nn.Module):
    def __init__(self, shape: ToyShape):
        super().__init__()
        self.shape = shape
        self.embed = nn.Linear(shape.x_dim + 1, shape.d_model, bias=False)
        self.layers = nn.ModuleList(ToyLayer(shape) for _ in range(shape.n_layer))
        self.readout = nn.Linear(shape.d_model, 1, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N + 1, x_dim + 1), the query last → predicted y_q of shape (B,)."""
        n_context = tokens.shape[1] - 1
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, n_context)
        return self.readout(x[:, -1]).squeeze(-1)


def build_toy(shape: ToyShape, seed: int) -> ToyTransformer:
    torch.manual_seed(seed)
    return ToyTransformer(shape)
