"""`wdrank audit`: the per-head L2-vs-nuclear audit of a trained model (paper Fig. 4)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wdrank.commands import add_command, figure_arguments, rank_thresholds_argument, torch_threads

COMMANDS = {"audit": "Fig. 4: per-head L2-vs-nuclear audit of a trained model (folder, checkpoint or GGUF file)"}


def _audit(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_csv
    from wdrank.audit import audit_model
    from wdrank.tables import audit_summary

    if (args.pdf is None) != (args.png is None):
        raise ValueError("give both --pdf and --png for the figure, or neither")
    torch_threads()
    name = args.name or Path(args.path).stem
    table = audit_model(args.path, tuple(args.rank_thresholds), args.n_head)
    table.insert(0, "model", name)
    if args.table is not None:
        write_csv(table, args.table)
    if args.provenance_out is not None:
        from wdrank import provenance

        record = provenance.provenance_table([{"model": name}], [provenance.record([args.path])])
        provenance.write_table(record, args.provenance_out, name)
    if args.pdf is not None:
        from wdrank.plots.audit import plot_audit
        from wdrank.plots.style import save_figure, set_width

        set_width(args.width)
        save_figure(plot_audit(table, name, args.note), args.pdf, args.png)
    print(audit_summary(table, name).to_string(index=False))


def register(commands: argparse._SubParsersAction) -> None:
    from wdrank.config import schema_default

    parser = add_command(commands, "audit", COMMANDS["audit"], _audit)
    parser.add_argument("path", help="a Hugging Face model folder, a timm .safetensors/.pth, or a llama .gguf file")
    parser.add_argument("--name", help="the model's name in the table and figure (default: the file or folder name)")
    parser.add_argument("--n-head", type=int, help="heads per layer, for timm checkpoints (default: d_model / 64)")
    rank_thresholds_argument(parser, default=schema_default("spectra", "rank_thresholds"))
    parser.add_argument("--note", default="", help="a line added under the figure title (e.g. quantisation)")
    parser.add_argument("--table", help="write the per-head table here (CSV); the summary is always printed")
    parser.add_argument("--provenance-out", help="write what produced the table here (CSV): versions, machine, "
                        "sha256 of the weight files")
    figure_arguments(parser, required=False)
