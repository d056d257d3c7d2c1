"""One way to train and finish a run, shared by the language model, the ViT and the toy Transformer.

An experiment's `setup(settings, data_dir, decays, seed)` builds what differs between them (model, task, schedule,
optimiser, what to score at the end); `run_training` does the rest the same way for all three: print the parameter
groups, train with exact resume (`wdrank.train`), score, and write summary.json (layout: `wdrank.summary`), provenance
included.
The spectra of the checkpoints are a separate step (`wdrank.run_spectra`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from wdrank import provenance
from wdrank.checkpoint import list_checkpoints
from wdrank.device import Compute, Placement, peak_flops, place
from wdrank.sweeps import SWEEPS, TRAINED
from wdrank.optim import WeightDecays
from wdrank.schedule import Schedule
from wdrank.summary import write_summary
from wdrank.tracking import TensorBoardTracker
from wdrank.trajectory import checkpoint_step
from wdrank.train import Task, train


@dataclass(frozen=True)
class Throughput:
    """How to report a session's speed: `unit` (tokens, images, tasks) per second and, with `flops_per_unit`,
    model-FLOPs utilisation on a GPU of known peak."""

    unit: str
    per_step: int  # units in one optimizer step (the global batch)
    flops_per_unit: float | None = None


@dataclass
class TrainingSetup:
    """What one experiment's run consists of; everything else about a run is shared."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: Task
    schedule: Schedule
    throughput: Throughput
    score: Callable[[nn.Module, dict[str, float]], dict]  # (trained model, last evaluation) -> the runs-table scores
    model_shape: dict  # the resolved shape (e.g. vocabulary size from the tokenizer), recorded in the summary
    model_config: dict | None = None  # config.json of checkpoints of models that do not write their own
    finish_checkpoint: Callable[[Path], None] | None = None  # called on every checkpoint folder after training
    inputs: tuple[Path, ...] = ()  # what the run reads besides its data folder (a LoRA run's base model): provenance


def run_decays(train_section: dict, wd_attn: float | None, wd_mlp: float | None,
               wd_lora: float | None = None) -> WeightDecays:
    """λ_SA from the sweep; λ_MLP from the sweep where it is an axis (language model), else the train section's
    fixed `wd_mlp` (ViT), else 0 (the toy has no MLP); everything else decays by the train section's `wd_other`;
    λ_LoRA from the sweep of a LoRA run (whose base is frozen: only its adapter's factors train)."""
    mlp = wd_mlp if wd_mlp is not None else train_section.get("wd_mlp", 0.0)
    return WeightDecays(attention=wd_attn or 0.0, mlp=mlp, other=train_section.get("wd_other", 0.0),
                        lora=wd_lora or 0.0)


def setting_value(settings: dict, path: tuple[str, ...]):
    """The value at a key path of a run's settings (a sweep axis that sets one, e.g. adapter.r)."""
    for key in path:
        settings = settings[key]
    return settings


def with_settings(settings: dict, assignments: dict[tuple[str, ...], object]) -> dict:
    """A copy of `settings` with the value at each key path replaced (what a setting axis's point sets)."""
    import copy

    updated = copy.deepcopy(settings)
    for path, value in assignments.items():
        node = updated
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return updated


def parameter_groups_record(optimizer: torch.optim.Optimizer) -> dict:
    """role -> weight decay, tensor and parameter counts, tensor names: which weights each λ reached."""
    return {group["role"]: {"weight_decay": group["weight_decay"], "tensors": len(group["params"]),
                            "parameters": sum(p.numel() for p in group["params"]),
                            "names": list(group["param_names"])}
            for group in optimizer.param_groups}


def run_training(experiment: ModuleType, settings: dict, data_dir: str | Path | None, decays: WeightDecays, seed: int,
                 summary_path: str | Path, metrics_path: str | Path, checkpoint_dir: str | Path,
                 compute: Compute | None = None, progress: bool = True,
                 tensorboard_dir: str | Path | None = None) -> dict | None:
    """Train one run of `experiment`, the module of one (`wdrank.experiments.lm`, `.vit`, `.toy` or `.lora`: its
    SECTION and `setup`), resuming from its checkpoints, logging to `metrics_path`, and to TensorBoard
    event files in `tensorboard_dir` if given), score it and write `summary_path`; returns the summary (None on the
    other processes of a DDP job, which write nothing)."""
    compute = compute or Compute()
    section = experiment.SECTION
    values = {"wd_attn": decays.attention, "wd_mlp": decays.mlp, "wd_other": decays.other, "wd_lora": decays.lora,
              "seed": seed}
    values.update({axis: setting_value(settings, path) for axis, path in TRAINED[section].setting_axes.items()})
    sweep = {axis: values[axis] for axis in SWEEPS[section]}
    tracker = None
    if tensorboard_dir is not None:
        tracker = TensorBoardTracker(tensorboard_dir, {"experiment": section, **sweep, **tracked_settings(settings)})
    setup = experiment.setup(settings, data_dir, decays, seed)
    groups = parameter_groups_record(setup.optimizer)
    placement = place(compute)
    if placement.is_main:
        for role, group in groups.items():
            print(f"{role}: {group['tensors']} tensors, {group['parameters']:,} parameters, "
                  f"weight decay {group['weight_decay']:g}")
    started = time.perf_counter()
    result = train(setup.model, setup.optimizer, setup.task, setup.schedule, checkpoint_dir, metrics_path, progress,
                   compute, setup.model_config, tracker)
    seconds = time.perf_counter() - started
    if not placement.is_main:
        return None
    scores = setup.score(setup.model, result.evaluation)
    checkpoints = list_checkpoints(checkpoint_dir)
    if setup.finish_checkpoint is not None:
        for path in checkpoints:
            setup.finish_checkpoint(path)
    summary = {
        "row": {**{column: values[column] for column in TRAINED[section].row_columns}, **scores},
        "run": {
            "experiment": section,
            "sweep": sweep,
            "settings": settings,
            "model_shape": setup.model_shape,
            "parameter_groups": groups,
            "checkpoints": [{"step": checkpoint_step(path), "path": str(path)} for path in checkpoints],
        },
        "session": {"train_seconds": seconds, "threads": torch.get_num_threads(),
                    **session_throughput(result.steps_per_second, setup.throughput, placement, compute)},
        "provenance": provenance.record([*([data_dir] if data_dir is not None else []), *setup.inputs]),
    }
    print(json.dumps(summary["session"]))
    write_summary(summary, summary_path)
    return summary


def tracked_settings(settings: dict) -> dict:
    """The training settings shown beside the sweep point in TensorBoard's HParams tab: every number, string or
    switch of the config section's `train` (learning rate, steps, batch, warm-up, ...), as `train.<key>`."""
    return {f"train.{key}": value for key, value in settings["train"].items()
            if isinstance(value, int | float | str | bool)}


def session_throughput(steps_per_second: float | None, throughput: Throughput, placement: Placement,
                       compute: Compute) -> dict:
    """Units/s of this session (all processes together) and model-FLOPs utilisation against the GPUs' peak."""
    device = torch.cuda.get_device_name(placement.device) if placement.device.type == "cuda" else "cpu"
    report: dict = {"device": f"{placement.world_size} x {device}"}
    if not steps_per_second:
        return report
    per_second = steps_per_second * throughput.per_step
    report[f"{throughput.unit}_per_second"] = per_second
    if throughput.flops_per_unit is not None and (peak := peak_flops(placement, compute)) is not None:
        report["mfu"] = per_second * throughput.flops_per_unit / (peak * placement.world_size)
    return report
