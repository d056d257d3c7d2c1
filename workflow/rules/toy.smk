# Fig. 2: toy Transformer on in-context regression; appendix: two scalar weights (wdrank.experiments.toy,
# wdrank.experiments.scalar_pair).

TOY = config["toy_transformer"]
TOY_SPACE = sweep("toy_transformer")
TOY_RUN = f"results/toy/runs/{TOY_SPACE.wildcard_pattern}"
PAIR = config["scalar_pair"]
PAIR_TABLE = "results/tables/figA_scalar_pair_trajectories.csv"


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
        ATTEMPT_HEADER
        + "{params.launcher} wdrank train toy_transformer --settings {params.settings:q} --wd-attn {wildcards.wd_attn}"
        " --seed {wildcards.seed} --summary {output.summary} --metrics {output.metrics}"
        " --checkpoint-dir {params.checkpoints} {params.tracking} >> {log} 2>&1"


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
        ATTEMPT_HEADER
        + "python -m wdrank scalar-pair --lambdas {params.lambdas} --target {params.target}"
        " --start {params.start} --lr {params.lr} --steps {params.steps} --table {output.table}"
        " --provenance-out {output.provenance} >> {log} 2>&1"
