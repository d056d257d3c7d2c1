"""Pipeline steps of a trained run: train it (language model, ViT or toy Transformer), then measure the spectra of
its checkpoints."""

from __future__ import annotations

import argparse
import json

from wdrank.commands import add_command, rank_thresholds_argument, torch_threads
from wdrank.sweeps import TRAINED

COMMANDS = {
    "train": "train one run of an experiment; resumes from its checkpoints",
    "spectra": "per-head spectra of every checkpoint of one run",
}


def _train(args: argparse.Namespace) -> None:
    from wdrank.preemption import preemption_signals

    # From the first moment: SLURM may preempt or warn of the time limit while torch still loads, and the loop then
    # stops at its first step boundary instead of the process dying on the signal.
    with preemption_signals():
        from wdrank.hub import go_offline

        go_offline()  # training never needs the network; a compute node may have none
        import importlib

        from wdrank.device import Compute
        from wdrank.experiments.training import run_decays, run_training, with_settings

        torch_threads()
        settings = with_settings(json.loads(args.settings), _setting_axes(args))
        if args.base_model is not None:
            settings["base_model"] = args.base_model
        decays = run_decays(settings["train"], args.wd_attn, args.wd_mlp, args.wd_lora)
        experiment = importlib.import_module(TRAINED[args.experiment].module)
        summary = run_training(experiment, settings, args.data_dir, decays, args.seed, args.summary,
                               args.metrics, args.checkpoint_dir, Compute(**settings.get("compute", {})),
                               tensorboard_dir=args.tensorboard)
    if summary is not None:  # the main process
        print(json.dumps(summary["row"]))


def _setting_axes(args: argparse.Namespace) -> dict[tuple[str, ...], object]:
    """The --set AXIS=VALUE of the experiment's setting axes (wdrank.sweeps.Trained), as key path -> value; every
    sweep axis must be given, as --wd-attn and the like or as --set."""
    from wdrank.sweeps import SWEEPS

    trained = TRAINED[args.experiment]
    given = {}
    for assignment in args.set:
        axis, _, value = assignment.partition("=")
        if axis not in trained.setting_axes:
            raise ValueError(f"--set {assignment}: {args.experiment} has no such setting axis (it has: "
                             f"{', '.join(trained.setting_axes) or 'none'})")
        given[trained.setting_axes[axis]] = json.loads(value)
    for axis in SWEEPS[args.experiment]:
        if axis in trained.setting_axes:
            if trained.setting_axes[axis] not in given:
                raise ValueError(f"{args.experiment} sweeps {axis}: give --set {axis}=VALUE")
        elif getattr(args, axis) is None and axis != "wd_mlp":
            raise ValueError(f"{args.experiment} sweeps {axis}: give --{axis.replace('_', '-')}")
    return given


def _spectra(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_run_table
    from wdrank.run_spectra import run_spectra

    table = run_spectra(args.summary, tuple(args.rank_thresholds))
    write_run_table(table, args.out, {"summary": args.summary, "rank_thresholds": args.rank_thresholds})


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "train", COMMANDS["train"], _train)
    parser.add_argument("experiment", choices=sorted(TRAINED), help="the config section of the experiment")
    parser.add_argument("--settings", required=True,
                        help="JSON of the experiment's config section without its sweep (model, train, data, compute)")
    parser.add_argument("--data-dir", help="the prepared data folder (language model and ViT)")
    parser.add_argument("--wd-attn", type=float, help="λ_SA, the weight decay of attention weights")
    parser.add_argument("--wd-mlp", type=float, help="λ_MLP where it is swept (default: train.wd_mlp, else 0)")
    parser.add_argument("--wd-lora", type=float, help="λ_LoRA, the weight decay of the adapter's factors (lora)")
    parser.add_argument("--set", action="append", default=[], metavar="AXIS=VALUE",
                        help="a sweep axis that sets a setting (lora: lora_r, lora_lr), e.g. --set lora_r=8")
    parser.add_argument("--base-model", help="lora: the model to fine-tune: a run's summary.json (its last "
                        "checkpoint), a transformers model folder or a .gguf file")
    parser.add_argument("--seed", type=int, required=True, help="initialisation and data order")
    parser.add_argument("--summary", required=True, help="summary.json of the finished run (layout: wdrank.summary)")
    parser.add_argument("--metrics", required=True, help="metrics.jsonl: train loss, lr, gradient norm, evaluations")
    parser.add_argument("--checkpoint-dir", required=True, help="checkpoints; a rerun resumes from the latest")
    parser.add_argument("--tensorboard", metavar="DIR",
                        help="also write the metrics as TensorBoard event files here (needs the tensorboard package)")

    parser = add_command(commands, "spectra", COMMANDS["spectra"], _spectra)
    parser.add_argument("--summary", required=True, help="summary.json of the run")
    rank_thresholds_argument(parser)
    parser.add_argument("--out", required=True, help="parquet table, one row per step, layer, head and product")
