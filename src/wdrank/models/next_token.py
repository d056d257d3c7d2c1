"""A causal language model's training loss — mean next-token cross-entropy — as one module, so that
`torch.compile` traces model and loss as one graph and DDP wraps them together (`NextTokenLoss`).

Two routes to the same number, chosen by the device (`wdrank.device.fused_kernels`):
- plain (CPU): the model's logits, upcast to fp32, and `F.cross_entropy`, operation for operation what
  `transformers` computes from `labels=` (so CPU results stay bit-identical), without its graph break;
- chunked (CUDA): the output layer and the loss fused by chunks of rows (`linear_cross_entropy`). Each chunk's
  logits exist in fp32 only while its loss and both gradients are computed, so a micro-batch never holds its full
  logits (GPT-2-small at 16 × 756 tokens: 1.2 GB in bf16, 2.4 GB more upcast to fp32, and as much for their
  gradient). The matmuls are the same three as autograd's, in the same (autocast) precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHUNK_ELEMENTS = 2**27  # logits per chunk (512 MiB in fp32): 2,670 rows of GPT-2's 50,257-word vocabulary
IGNORE_INDEX = -100  # the label transformers pads with past the last position


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` against `targets`; gradients computed chunk by chunk in the forward
    pass (only where grad mode was on at the call and the input requires them) and only scaled in the backward pass.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int,
                grad_enabled: bool) -> torch.Tensor:
        # Inside forward grad mode is always off and needs_input_grad follows requires_grad alone, so the caller's
        # grad mode comes in as an argument: evaluation under no_grad computes the loss and nothing else.
        count = hidden.shape[0]
        grad_hidden = torch.empty_like(hidden) if grad_enabled and ctx.needs_input_grad[0] else None
        grad_weight = (torch.zeros_like(weight, dtype=torch.float32) if grad_enabled and ctx.needs_input_grad[1]
                       else None)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, count, rows):
            chunk, chunk_targets = hidden[start:start + rows], targets[start:start + rows]
            logits = F.linear(chunk, weight).float()  # in the autocast dtype, then fp32 as transformers upcasts
            log_normaliser = torch.logsumexp(logits, dim=-1)
            total = total + (log_normaliser - logits.gather(1, chunk_targets[:, None]).squeeze(1)).sum()
            if grad_hidden is not None or grad_weight is not None:
                # d(mean loss)/d(logits) = (softmax − one-hot) / count, written over the chunk's logits
                logits.sub_(log_normaliser[:, None]).exp_()
                logits[torch.arange(len(chunk_targets), device=hidden.device), chunk_targets] -= 1
                logits /= count
                if grad_hidden is not None:
                    grad_hidden[start:start + rows] = logits.matmul(weight)
                if grad_weight is not None:
                    grad_weight += logits.t().matmul(chunk).float()
            del logits  # freed before the next chunk's are made: one chunk's logits at a time
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total / count

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (None if grad_hidden is None else grad_hidden * grad_output,
                None if grad_weight is None else (grad_weight * grad_output).to(ctx.weight_dtype), None, None, None)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of the logits `hidden @ weight.T` (N × V, never held whole) against `targets` (N,),
    `rows` rows at a time (default: CHUNK_ELEMENTS logits a chunk)."""
    return _LinearCrossEntropy.apply(hidden, weight, targets, rows or rows_per_chunk(weight.shape[0]),
                                     torch.is_grad_enabled())


def rows_per_chunk(vocab_size: int) -> int:
    """Rows of a chunk of the chunked route: CHUNK_ELEMENTS logits (at least one row)."""
    return max(1, CHUNK_ELEMENTS // vocab_size)


def plain_next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy from full logits (B, T, V), as `transformers` computes it from `labels=`:
    fp32 logits, labels shifted left and padded with IGNORE_INDEX."""
    targets = F.pad(input_ids, (0, 1), value=IGNORE_INDEX)[..., 1:].contiguous()
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1), ignore_index=IGNORE_INDEX)


def language_model(model: nn.Module) -> nn.Module:
    """The `transformers` causal LM inside `model` (itself, or the model a peft adapter is injected into)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class NextTokenLoss(nn.Module):
    """Mean next-token cross-entropy of `model` (a causal LM, peft-wrapped or not) over windows of token ids (B, T):
    chunked (`linear_cross_entropy` from the final hidden states) or plain (from the model's full logits)."""

    def __init__(self, model: nn.Module, chunked: bool):
        super().__init__()
        self.model, self.chunked = model, chunked

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not self.chunked:
            return plain_next_token_loss(self.model(input_ids=input_ids).logits, input_ids)
        lm = language_model(self.model)
        hidden = lm.base_model(input_ids=input_ids).last_hidden_state[:, :-1]
        return linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), lm.get_output_embeddings().weight,
                                    input_ids[:, 1:].reshape(-1))


@torch.no_grad()
def summed_next_token_nll(model: nn.Module, input_ids: torch.Tensor, chunked: bool) -> float:
    """The next-token NLL summed over every predicted token of the windows `input_ids` (B, T), in float64 (test
    perplexity): from the model's full logits, or chunk by chunk from its final hidden states."""
    targets = input_ids[:, 1:].reshape(-1)
    if not chunked:
        logits = model(input_ids=input_ids).logits[:, :-1].double()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="sum").item()
    lm = language_model(model)
    hidden = lm.base_model(input_ids=input_ids).last_hidden_state[:, :-1]
    hidden, weight = hidden.reshape(-1, hidden.shape[-1]), lm.get_output_embeddings().weight
    rows = rows_per_chunk(weight.shape[0])
    return sum(F.cross_entropy(F.linear(hidden[start:start + rows], weight).double(), targets[start:start + rows],
                               reduction="sum").item() for start in range(0, len(targets), rows))
