"""Parameter groups by role, each with its own weight decay (Table 1 varies λ_SA and λ_MLP separately).

The rule, stated once: a LoRA adapter's factor (peft's lora_A, lora_B) is `lora`, wherever it sits; a 2-D weight
inside an attention block is `attention`, a 2-D weight inside an MLP block is `mlp`, and everything else
(embeddings, norms, biases, the output head) is `other`. Every trainable parameter lands in exactly one group
(asserted); frozen ones (a LoRA run's base model) in none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from wdrank.device import fused_kernels
from wdrank.schedule import Schedule, every_n_steps

ROLES = ("attention", "mlp", "other", "lora")
# Module-path fragments of attention and MLP blocks in GPT-2 / LLaMA / BERT (transformers), timm ViT and our toys.
ATTENTION_PATTERN = re.compile(r"(^|\.)(attn|self_attn|attention)\.")
MLP_PATTERN = re.compile(r"(^|\.)(mlp|feed_forward|intermediate|output\.dense)\.?")
LORA_PATTERN = re.compile(r"\.lora_(embedding_)?[AB](\.|$)")


@dataclass(frozen=True)
class WeightDecays:
    attention: float  # λ_SA
    mlp: float  # λ_MLP
    other: float = 0.0
    lora: float = 0.0  # λ_LoRA, on the factors of LoRA adapters

    def __post_init__(self) -> None:
        for role in ROLES:
            if getattr(self, role) < 0:
                raise ValueError(f"weight decay of the {role} group must be >= 0, got {getattr(self, role)}")


def parameter_role(name: str, parameter: nn.Parameter) -> str:
    """'attention', 'mlp', 'other' or 'lora' for a named parameter (see the module docstring)."""
    if LORA_PATTERN.search(name):
        return "lora"
    if parameter.ndim == 2 and ATTENTION_PATTERN.search(name):
        return "attention"
    if parameter.ndim == 2 and MLP_PATTERN.search(name):
        return "mlp"
    return "other"


def parameter_groups(model: nn.Module, decays: WeightDecays) -> list[dict]:
    """Optimizer parameter groups, one per role, each tagged with its `role` and `weight_decay`."""
    by_role: dict[str, list[nn.Parameter]] = {role: [] for role in ROLES}
    names: dict[str, list[str]] = {role: [] for role in ROLES}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            role = parameter_role(name, parameter)
            by_role[role].append(parameter)
            names[role].append(name)
    grouped = [id(p) for params in by_role.values() for p in params]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable) and len(set(grouped)) == len(grouped), \
        "every trainable parameter must be in exactly one group"
    return [{"params": by_role[role], "param_names": names[role], "role": role,
             "weight_decay": getattr(decays, role)} for role in ROLES if by_role[role]]


ALGORITHMS = ("adamw", "adam_l2", "sgd")


def build_optimizer(model: nn.Module, decays: WeightDecays, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-8, algorithm: str = "adamw") -> torch.optim.Optimizer:
    """The optimiser over the role groups.

    adamw: decoupled decay, w ← w − lr·λ·w besides the Adam step (the paper's setting); adam_l2: Adam with λ·w
    added to the gradient (coupled, so Adam rescales it); sgd: plain gradient descent on L + λ/2‖w‖², where
    coupled and decoupled coincide (the setting of the theory).
    """
    groups = parameter_groups(model, decays)
    if algorithm == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    if algorithm == "adam_l2":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps)
    if algorithm == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    raise ValueError(f"optimizer algorithm {algorithm!r} is not known; choose one of {ALGORITHMS}")


def select_kernels(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam's and AdamW's fused kernel (one launch for every parameter) on CUDA, the plain one elsewhere
    (`wdrank.device.fused_kernels`), whatever the optimizer was built or its checkpoint saved with: called once the
    parameters and the optimizer state sit on `device`."""
    if not isinstance(optimizer, torch.optim.Adam):  # AdamW is one too
        return
    fused = fused_kernels(device)
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = (True, False) if fused else (None, None)
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            if fused and "step" in state:  # the fused kernel reads the step count on the device, in fp32
                state["step"] = state["step"].to(parameter.device, torch.float32)


@dataclass(frozen=True)
class AdamWTraining:
    """Optimisation settings shared by the language-model, ViT and LoRA experiments (their config `train` sections):
    AdamW over the role groups, linear warmup then cosine, clipping, evaluation and checkpoint intervals."""

    steps: int
    batch_size: int
    micro_batch_size: int | None
    lr: float
    warmup_steps: int
    min_lr_ratio: float
    beta1: float
    beta2: float
    eps: float
    grad_clip: float
    wd_other: float
    eval_every: int
    checkpoint_every: int  # plus step 0 and the last step; 0: only those

    def schedule(self) -> Schedule:
        return Schedule(steps=self.steps, batch_size=self.batch_size, micro_batch_size=self.micro_batch_size,
                        warmup_steps=self.warmup_steps, min_lr_ratio=self.min_lr_ratio, grad_clip=self.grad_clip,
                        eval_every=self.eval_every, checkpoint_steps=every_n_steps(self.steps, self.checkpoint_every))

    def optimizer(self, model: nn.Module, decays: WeightDecays) -> torch.optim.Optimizer:
        return build_optimizer(model, decays, self.lr, (self.beta1, self.beta2), self.eps)
