"""`wdrank audit`: the per-head L2-vs-nuclear audit of a trained model (paper Fig. 4), or of its checkpoints along
training (several models, revisions or a folder of checkpoints: a trajectory)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wdrank.commands import add_command, figure_arguments, rank_thresholds_argument

COMMANDS = {"audit": "Fig. 4: per-head L2-vs-nuclear audit of a model (folder, file, GGUF or hub id) or per-module "
                     "audit of a PEFT LoRA adapter, or of its checkpoints along training"}


def _models(args: argparse.Namespace) -> list[str]:
    """What to audit, in order: the models given, each hub id expanded over --revisions, or the checkpoint
    folders inside the one folder given with --checkpoints."""
    from wdrank.hub import model_id
    from wdrank.trajectory import checkpoint_folders

    if args.checkpoints:
        if len(args.model) != 1:
            raise ValueError("--checkpoints takes one folder (of checkpoint folders)")
        return [str(folder) for folder in checkpoint_folders(args.model[0])]
    if not args.revisions:
        return args.model
    if len(args.model) != 1 or model_id(args.model[0]) is None or "@" in args.model[0]:
        raise ValueError("--revisions takes one hub id without @revision, e.g. EleutherAI/pythia-70m")
    return [f"{args.model[0]}@{revision}" for revision in args.revisions]


def _audit(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_csv
    from wdrank.audit import audit_model, local_model
    from wdrank.hub import model_id, model_name

    if (args.pdf is None) != (args.png is None):
        raise ValueError("give both --pdf and --png for the figure, or neither")
    for option, value in (("--n-head", args.n_head), ("--threads", args.threads)):
        if value is not None and value < 1:  # before any download
            raise ValueError(f"{option} must be a positive number, got {value}")
    for option, value in (("--table", args.table), ("--provenance-out", args.provenance_out), ("--pdf", args.pdf),
                          ("--png", args.png)):
        if value is not None and Path(value).is_dir():
            raise ValueError(f"{option} {value} is a folder: give the file to write")
    models = _models(args)
    trajectory = len(models) > 1
    name = args.name or model_name(args.model[0] if args.checkpoints or args.revisions else models[0])
    paths = [local_model(model, args.hub_cache) for model in models]
    labels = [model_name(model) if model_id(model) else Path(model).name for model in models]
    tables = []
    for path, label in zip(paths, labels, strict=True):
        table = audit_model(path, tuple(args.rank_thresholds), args.n_head, threads=args.threads,
                            progress=not args.quiet)
        table.insert(0, "model", name)
        if trajectory:
            table.insert(1, "checkpoint", label)
        tables.append(table)
    if trajectory:
        from wdrank.trajectory import with_steps

        table = with_steps(tables)
    else:
        table = tables[0]
    if args.table is not None:
        write_csv(table, args.table)
    if args.provenance_out is not None:
        from wdrank import provenance
        from wdrank.weights import files_read

        runs = [{"model": name, **({"checkpoint": label} if trajectory else {})} for label in labels]
        records = [provenance.record(files_read(path)) for path in paths]
        provenance.write_table(provenance.provenance_table(runs, records), args.provenance_out, name)
    if args.pdf is not None:
        _write_figure(table, name, trajectory, args)
    _print_summary(table, name, trajectory)


def _write_figure(table, name: str, trajectory: bool, args: argparse.Namespace) -> None:
    """Fig. 4 of one model or adapter, or the trajectory figure of several checkpoints of a model."""
    from wdrank.plots.audit import plot_audit, plot_trajectory
    from wdrank.plots.lora import plot_adapter_audit
    from wdrank.plots.style import save_figure, set_width

    adapter = "module" in table.columns
    if adapter and trajectory:
        raise ValueError("--pdf/--png: an adapter along training is drawn by the LoRA experiment (lora_balance); "
                         "give --table alone")
    set_width(args.width)
    figure = plot_adapter_audit(table, args.note) if adapter else (plot_trajectory if trajectory else plot_audit)(
        table, args.note)
    save_figure(figure, args.pdf, args.png)


def _print_summary(table, name: str, trajectory: bool) -> None:
    from wdrank.tables import audit_summary

    if not trajectory:
        print(audit_summary(table, name).to_string(index=False))
        return
    for (step, checkpoint), rows in table.groupby(["step", "checkpoint"], sort=True):
        print(f"step {step} ({checkpoint})")
        print(audit_summary(rows, name).to_string(index=False))


def register(commands: argparse._SubParsersAction) -> None:
    from wdrank.config import schema_default

    parser = add_command(commands, "audit", COMMANDS["audit"], _audit)
    parser.add_argument("model", nargs="+", help="a Hugging Face or timm model folder, a timm .safetensors/.pth, a "
                        "llama .gguf, a PEFT LoRA adapter folder (adapter_config.json), or a hub id "
                        "org/name[@revision] of one; several: one table and figure along training")
    parser.add_argument("--revisions", nargs="+", metavar="REVISION",
                        help="audit these revisions of the one hub id given (e.g. Pythia's step1000 step143000)")
    parser.add_argument("--checkpoints", action="store_true",
                        help="the one folder given holds checkpoint folders (step_000400, checkpoint-1000, ...): "
                             "audit each along training")
    parser.add_argument("--name", help="the model's name in the table and figure (default: the hub id, or the file "
                        "or folder name)")
    parser.add_argument("--n-head", type=int, help="heads per layer, for timm checkpoint files "
                        "(default: d_model / 64)")
    parser.add_argument("--hub-cache", help="the Hugging Face cache to download into or read from (default: the "
                        "user's; HF_HUB_OFFLINE=1 reads it alone)")
    parser.add_argument("--threads", type=int, help="layers computed at once (default: OMP_NUM_THREADS, or "
                        "every CPU this process may use)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    rank_thresholds_argument(parser, default=schema_default("spectra", "rank_thresholds"))
    parser.add_argument("--note", default="", help="a line added under the figure title (e.g. quantisation)")
    parser.add_argument("--table", help="write the per-head table here (CSV); the summary is always printed")
    parser.add_argument("--provenance-out", help="write what produced the table here (CSV): versions, machine, "
                        "sha256 of the weight files")
    figure_arguments(parser, required=False)
