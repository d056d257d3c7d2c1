# Fig. 2: toy Transformer on in-context regression; appendix: two scalar weights (wdrank.experiments.toy,
# wdrank.experiments.scalar_pair).

TOY = config["toy_transformer"]
TOY_SPACE = sweep("toy_transformer")
TOY_RUN = f"results/toy/runs/{TOY_SPACE.wildcard_pattern}"
TOY_TABLES = run_tables("toy_transformer")
TOY_FIGURE = "fig2_toy_transformer"
TOY_CATEGORY = "Fig. 2: toy Transformer"
TOY_SOURCES = list(TOY_TABLES.values())
TOY_OUTPUTS = TOY_SOURCES + [
    f"results/figures/{TOY_FIGURE}.{ext}" for ext in ("pdf", "png")
]
PAIR = config["scalar_pair"]
PAIR_TABLE = "results/tables/figA_scalar_pair_trajectories.csv"
PAIR_FIGURE = "figA_scalar_pair_trajectories"
PAIR_SOURCES = [PAIR_TABLE]
PAIR_OUTPUTS = PAIR_SOURCES + [
    f"results/figures/{PAIR_FIGURE}.{ext}" for ext in ("pdf", "png")
]


rule toy_train:
    output:
        summary=f"{TOY_RUN}/summary.json",
        metrics=f"{TOY_RUN}/metrics.jsonl",
    log:
        f"logs/toy_train/{TOY_SPACE.wildcard_pattern}.log",
    benchmark:
        f"logs/toy_train/{TOY_SPACE.wildcard_pattern}.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("toy_train")
    resources:
        **job_resources("toy_train"),
    params:
        settings=run_settings("toy_transformer"),
        launcher=launcher("toy_train"),
        checkpoints=f"results/toy/checkpoints/{TOY_SPACE.wildcard_pattern}",
        tracking=tracking_option("toy_transformer"),
    shell:
        "{params.launcher} wdrank train toy_transformer --settings {params.settings:q} --wd-attn {wildcards.wd_attn}"
        " --seed {wildcards.seed} --summary {output.summary} --metrics {output.metrics}"
        " --checkpoint-dir {params.checkpoints} {params.tracking} > {log} 2>&1"


rule fig2_toy_transformer:
    input:
        **TOY_TABLES,
        code=code("wdrank.plots.toy"),
    output:
        **figure_files(TOY_FIGURE, "../report/fig2_toy_transformer.rst", TOY_CATEGORY),
    log:
        "logs/fig2_toy_transformer.log",
    benchmark:
        "logs/fig2_toy_transformer.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("fig2_toy_transformer")
    resources:
        **job_resources("fig2_toy_transformer"),
    params:
        width=FIGURE_WIDTH,
        rank_metric=RANK_METRIC,
        lr=TOY["train"]["lr"],
        optimizer=TOY["train"]["optimizer"],
    shell:
        "python -m wdrank figure fig2_toy_transformer --runs {input.runs} --spectra {input.spectra}"
        " --rank-metric {params.rank_metric} --lr {params.lr} --optimizer {params.optimizer}"
        " --width {params.width} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule scalar_pair:
    output:
        table=PAIR_TABLE,
        provenance=provenance_of(PAIR_TABLE),
    log:
        "logs/scalar_pair.log",
    benchmark:
        "logs/scalar_pair.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("scalar_pair")
    resources:
        **job_resources("scalar_pair"),
    params:
        lambdas=" ".join(map(str, PAIR["lambdas"])),
        target=" ".join(map(str, PAIR["target"])),
        start=" ".join(map(str, PAIR["start"])),
        lr=PAIR["lr"],
        steps=PAIR["steps"],
    shell:
        "python -m wdrank scalar-pair --lambdas {params.lambdas} --target {params.target}"
        " --start {params.start} --lr {params.lr} --steps {params.steps} --table {output.table}"
        " --provenance-out {output.provenance} > {log} 2>&1"


rule figA_scalar_pair_trajectories:
    input:
        code=code("wdrank.plots.toy"),
        table=PAIR_TABLE,
    output:
        **figure_files(
            PAIR_FIGURE, "../report/figA_scalar_pair_trajectories.rst", TOY_CATEGORY
        ),
    log:
        "logs/figA_scalar_pair_trajectories.log",
    benchmark:
        "logs/figA_scalar_pair_trajectories.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("figA_scalar_pair_trajectories")
    resources:
        **job_resources("figA_scalar_pair_trajectories"),
    params:
        width=FIGURE_WIDTH,
        target=" ".join(map(str, PAIR["target"])),
    shell:
        "python -m wdrank figure figA_scalar_pair_trajectories --table {input.table} --target {params.target}"
        " --width {params.width} --pdf {output.pdf} --png {output.png} > {log} 2>&1"
