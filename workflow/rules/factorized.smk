# Fig. 1: gradient descent on two factor matrices (wdrank.experiments.factorized).

FACTORIZED = config["factorized"]
FACTORIZED_SPACE = sweep("factorized")
FACTORIZED_TABLE = "results/tables/fig1_factorized_matrices.csv"


rule factorized_run:
    output:
        f"results/factorized/runs/{FACTORIZED_SPACE.wildcard_pattern}.parquet",
    log:
        f"logs/factorized_run/{FACTORIZED_SPACE.wildcard_pattern}.log",
    benchmark:
        f"logs/factorized_run/{FACTORIZED_SPACE.wildcard_pattern}.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("factorized_run")
    resources:
        **job_resources("factorized_run"),
    params:
        targets=" ".join(map(str, FACTORIZED["targets"])),
        rank_thresholds=RANK_THRESHOLDS,
        lr=FACTORIZED["lr"],
        steps=FACTORIZED["steps"],
        record_points=FACTORIZED["record_points"],
        init_std=FACTORIZED["init_std"],
    shell:
        ATTEMPT_HEADER
        + "python -m wdrank factorized-run --lam {wildcards.lam} --seed {wildcards.seed}"
        " --targets {params.targets} --rank-thresholds {params.rank_thresholds} --lr {params.lr}"
        " --steps {params.steps} --record-points {params.record_points} --init-std {params.init_std}"
        " --out {output} >> {log} 2>&1"


rule factorized_table:
    input:
        code=code("wdrank.commands.results"),
        runs=expand(
            "results/factorized/runs/{point}.parquet",
            point=FACTORIZED_SPACE.instance_patterns,
        ),
    output:
        table=FACTORIZED_TABLE,
        provenance=provenance_of(FACTORIZED_TABLE),
    log:
        "logs/factorized_table.log",
    benchmark:
        "logs/factorized_table.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("factorized_table")
    resources:
        **job_resources("factorized_table"),
    shell:
        ATTEMPT_HEADER
        + "python -m wdrank concat-tables {input.runs} --out {output.table}"
        " --provenance-out {output.provenance} >> {log} 2>&1"
