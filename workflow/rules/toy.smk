# Fig. 2: toy Transformer on in-context regression; appendix: two scalar weights (wdrank.experiments.toy,
# wdrank.experiments.scalar_pair).

TOY = config["toy_transformer"]
TOY_SPACE = sweep(wd_attn=TOY["sweep"]["wd_attn"], seed=TOY["sweep"]["seeds"])
TOY_OUTPUTS = [
    "results/tables/fig2_toy_runs.csv",
    "results/tables/fig2_toy_head_spectra.csv",
    "results/figures/fig2_toy_transformer.pdf",
    "results/figures/fig2_toy_transformer.png",
]
PAIR = config["scalar_pair"]
PAIR_OUTPUTS = [
    "results/tables/figA_scalar_pair_trajectories.csv",
    "results/figures/figA_scalar_pair_trajectories.pdf",
    "results/figures/figA_scalar_pair_trajectories.png",
]


rule toy_run:
    output:
        summary=f"results/toy/runs/{TOY_SPACE.wildcard_pattern}/summary.json",
        spectra=f"results/toy/runs/{TOY_SPACE.wildcard_pattern}/spectra.parquet",
    log:
        f"logs/toy_run/{TOY_SPACE.wildcard_pattern}.log",
    benchmark:
        f"logs/toy_run/{TOY_SPACE.wildcard_pattern}.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("toy_run")
    resources:
        **job_resources("toy_run"),
    params:
        # model and training only: the sweep stays out so that adding a grid value reruns nothing else
        settings=json.dumps(
            {"model": TOY["model"], "train": TOY["train"]}, sort_keys=True
        ),
        rank_thresholds=RANK_THRESHOLDS,
        checkpoints=f"results/toy/checkpoints/{TOY_SPACE.wildcard_pattern}",
    shell:
        "python -m wdrank toy-run --settings {params.settings:q} --wd-attn {wildcards.wd_attn}"
        " --seed {wildcards.seed} --rank-thresholds {params.rank_thresholds}"
        " --run-dir $(dirname {output.summary}) --checkpoint-dir {params.checkpoints} > {log} 2>&1"


rule toy_tables:
    input:
        summaries=expand(
            "results/toy/runs/{params}/summary.json",
            params=TOY_SPACE.instance_patterns,
        ),
        spectra=expand(
            "results/toy/runs/{params}/spectra.parquet",
            params=TOY_SPACE.instance_patterns,
        ),
    output:
        runs=TOY_OUTPUTS[0],
        spectra=TOY_OUTPUTS[1],
    log:
        "logs/toy_tables.log",
    benchmark:
        "logs/toy_tables.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("toy_tables")
    resources:
        **job_resources("toy_tables"),
    shell:
        "python -m wdrank collect-runs --summaries {input.summaries} --spectra {input.spectra}"
        " --runs-out {output.runs} --spectra-out {output.spectra} > {log} 2>&1"


rule toy_report:
    input:
        runs=TOY_OUTPUTS[0],
        spectra=TOY_OUTPUTS[1],
    output:
        TOY_OUTPUTS[2],
        report(
            TOY_OUTPUTS[3],
            caption="../report/fig2_toy_transformer.rst",
            category="Fig. 2: toy Transformer",
        ),
    log:
        "logs/toy_report.log",
    benchmark:
        "logs/toy_report.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("toy_report")
    resources:
        **job_resources("toy_report"),
    params:
        rank_metric=RANK_METRIC,
        lr=TOY["train"]["lr"],
        optimizer=TOY["train"]["optimizer"],
    shell:
        "python -m wdrank toy-report --runs {input.runs} --spectra {input.spectra}"
        " --rank-metric {params.rank_metric} --lr {params.lr} --optimizer {params.optimizer}"
        " --figures results/figures > {log} 2>&1"


rule scalar_pair:
    output:
        PAIR_OUTPUTS[0],
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
        " --start {params.start} --lr {params.lr} --steps {params.steps} --table {output}"
        " > {log} 2>&1"


rule scalar_pair_figure:
    input:
        PAIR_OUTPUTS[0],
    output:
        pdf=PAIR_OUTPUTS[1],
        png=report(
            PAIR_OUTPUTS[2],
            caption="../report/figA_scalar_pair_trajectories.rst",
            category="Fig. 2: toy Transformer",
        ),
    log:
        "logs/scalar_pair_figure.log",
    benchmark:
        "logs/scalar_pair_figure.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("scalar_pair_figure")
    resources:
        **job_resources("scalar_pair_figure"),
    params:
        target=" ".join(map(str, PAIR["target"])),
    shell:
        "python -m wdrank scalar-pair-figure {input} --target {params.target}"
        " --pdf {output.pdf} --png {output.png} > {log} 2>&1"
