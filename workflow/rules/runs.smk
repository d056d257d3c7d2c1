# What every trained experiment (language model, ViT, toy Transformer) does after training, the same way
# (wdrank.run_spectra): the spectra of each run's checkpoints, then one runs table and one head-spectra table; and its
# learning curves: one table of every run's metrics log, and its figure.
# Spectra are a job of their own so that changing the rank thresholds retrains nothing, and a GPU job never spends
# its allocation on them.


rule run_spectra:
    input:
        "results/{experiment}/runs/{point}/summary.json",
    output:
        "results/{experiment}/runs/{point}/spectra.parquet",
    log:
        "logs/run_spectra/{experiment}/{point}.log",
    benchmark:
        "logs/run_spectra/{experiment}/{point}.benchmark.tsv"
    wildcard_constraints:
        experiment="|".join(EXPERIMENT_NAMES.values()),
        point=".+",
    conda:
        WDRANK_ENV
    threads: job_threads("run_spectra")
    resources:
        **job_resources("run_spectra"),
    params:
        rank_thresholds=RANK_THRESHOLDS,
    shell:
        ATTEMPT_HEADER
        + "python -m wdrank spectra --summary {input} --rank-thresholds {params.rank_thresholds}"
        " --out {output} >> {log} 2>&1"


rule collect_runs:
    input:
        code=code("wdrank.commands.results"),
        summaries=lambda wildcards: run_files(
            SECTION_OF_NAME[wildcards.experiment], "summary.json"
        ),
        spectra=lambda wildcards: run_files(
            SECTION_OF_NAME[wildcards.experiment], "spectra.parquet"
        ),
    output:
        runs=run_tables("{experiment}")["runs"],
        spectra=run_tables("{experiment}")["spectra"],
        provenance=provenance_of(run_tables("{experiment}")["runs"]),
    log:
        "logs/collect_runs/{experiment}.log",
    benchmark:
        "logs/collect_runs/{experiment}.benchmark.tsv"
    wildcard_constraints:
        experiment="|".join(EXPERIMENT_NAMES.values()),
    conda:
        WDRANK_ENV
    threads: job_threads("collect_runs")
    resources:
        **job_resources("collect_runs"),
    shell:
        ATTEMPT_HEADER
        + "python -m wdrank collect-runs --summaries {input.summaries} --spectra {input.spectra}"
        " --runs-out {output.runs} --spectra-out {output.spectra}"
        " --provenance-out {output.provenance} >> {log} 2>&1"


rule learning_curves_table:
    input:
        code=code("wdrank.commands.results"),
        summaries=lambda wildcards: run_files(
            SECTION_OF_NAME[wildcards.experiment], "summary.json"
        ),
        metrics=lambda wildcards: run_files(
            SECTION_OF_NAME[wildcards.experiment], "metrics.jsonl"
        ),
    output:
        run_tables("{experiment}")["curves"],
    log:
        "logs/learning_curves_table/{experiment}.log",
    benchmark:
        "logs/learning_curves_table/{experiment}.benchmark.tsv"
    wildcard_constraints:
        experiment="|".join(EXPERIMENT_NAMES.values()),
    conda:
        WDRANK_ENV
    threads: job_threads("learning_curves_table")
    resources:
        **job_resources("learning_curves_table"),
    shell:
        ATTEMPT_HEADER
        + "python -m wdrank learning-curves --summaries {input.summaries} --metrics {input.metrics}"
        " --out {output} >> {log} 2>&1"
