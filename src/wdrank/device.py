"""Where a training job runs: the device (`auto` takes CUDA when present), bf16 autocast, torch.compile, TF32,
and data parallelism across the processes that `torchrun` starts (DDP, gloo on CPU, NCCL on GPUs).

The global batch is what the config says whatever the number of processes: each process computes its own
contiguous rows of it (`wdrank.schedule.Schedule.micro_batches`), and DDP averages the gradients, so one process and
N processes optimise the same objective.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
# Dense peak TFLOP/s per GPU (no sparsity) for model-FLOPs utilisation: bf16 tensor cores, and fp32 matmuls run as
# TF32. Matched against torch.cuda.get_device_name(); unknown devices report no MFU.
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp32": 494.5},
    "H100 PCIe": {"bf16": 756.0, "fp32": 378.0},
    "H100": {"bf16": 989.0, "fp32": 494.5},
    "A100": {"bf16": 312.0, "fp32": 156.0},
    "L40S": {"bf16": 362.0, "fp32": 181.0},
    "A10G": {"bf16": 70.0, "fp32": 35.0},
}


@dataclass(frozen=True)
class Compute:
    """Config section `<experiment>.compute`: how (not what) a training job computes."""

    device: str = "cpu"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast of forward and loss; weights and optimizer stay fp32)
    compile: bool = False  # torch.compile the forward pass

    def __post_init__(self) -> None:
        if self.device not in DEVICES or self.precision not in PRECISIONS:
            raise ValueError(f"compute {self}: device must be one of {DEVICES}, precision one of {PRECISIONS}")


@dataclass(frozen=True)
class Placement:
    """This process's device and its rank among `world_size` data-parallel processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def place(compute: Compute) -> Placement:
    """Choose the device and, under torchrun (WORLD_SIZE > 1), join the process group."""
    cuda = compute.device == "cuda" or (compute.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("compute.device is 'cuda' but torch sees no CUDA device (use 'auto' to fall back to CPU)")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Placement(device, rank, world_size)


def autocast(placement: Placement, compute: Compute) -> AbstractContextManager:
    return torch.autocast(placement.device.type, dtype=torch.bfloat16, enabled=compute.precision == "bf16")


def fused_kernels(device: torch.device) -> bool:
    """Whether a job on `device` takes the fused kernels (AdamW's `fused=True`, the chunked output layer and loss of
    `wdrank.models.next_token`): on CUDA, where they save launches and memory; elsewhere the plain ones, to which they
    are equal to rounding, so that CPU results stay bit-identical from version to version."""
    return device.type == "cuda"


def move(batch: Any, device: torch.device) -> Any:
    """The batch (a tensor, or a tuple/list of them) on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return type(batch)(move(item, device) for item in batch)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters live (evaluation moves its inputs there)."""
    return next(model.parameters()).device


def synchronize(placement: Placement) -> None:
    """Wait for this process's device to finish its queued work (a no-op on CPU)."""
    if placement.device.type == "cuda":
        torch.cuda.synchronize(placement.device)


def mean_over_processes(value: float, placement: Placement) -> float:
    if not placement.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=placement.device)
    dist.all_reduce(tensor)
    return tensor.item() / placement.world_size


def any_process(flag: bool, placement: Placement) -> bool:
    """True on every process if `flag` is true on any (so that all stop at the same step)."""
    if not placement.distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=placement.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def wait_for_all(placement: Placement) -> None:
    """Block until every process gets here (e.g. until rank 0 has written a checkpoint before all exit)."""
    if placement.distributed:
        dist.barrier()


def peak_flops(placement: Placement, compute: Compute) -> float | None:
    """Dense peak FLOP/s of this process's GPU at the configured precision, if known."""
    if placement.device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(placement.device)
    for model, peaks in PEAK_TFLOPS.items():
        if model in name:
            return peaks[compute.precision] * 1e12
    return None

