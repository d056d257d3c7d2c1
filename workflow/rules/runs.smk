# What every trained experiment (language model, ViT, toy Transformer) does after training, the same way
# (wdrank.runs): the spectra of each run's checkpoints, then one runs table and one head-spectra table.
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
        experiment="|".join(TRAINED_DIRS.values()),
        point=".+",
    conda:
        WDRANK_ENV
    threads: job_threads("run_spectra")
    resources:
        **job_resources("run_spectra"),
    params:
        rank_thresholds=RANK_THRESHOLDS,
    shell:
        "python -m wdrank spectra --summary {input} --rank-thresholds {params.rank_thresholds}"
        " --out {output} > {log} 2>&1"


# The experiment (config section) whose result tables begin with each prefix.
SECTION_OF_TABLES = {prefix: section for section, prefix in TRAINED_TABLES.items()}


rule collect_runs:
    input:
        code=code("wdrank.commands.results"),
        summaries=lambda wildcards: run_files(
            SECTION_OF_TABLES[wildcards.prefix], "summary.json"
        ),
        spectra=lambda wildcards: run_files(
            SECTION_OF_TABLES[wildcards.prefix], "spectra.parquet"
        ),
    output:
        runs="results/tables/{prefix}_runs.csv",
        spectra="results/tables/{prefix}_head_spectra.csv",
        provenance="results/tables/{prefix}_runs_provenance.csv",
    log:
        "logs/collect_runs/{prefix}.log",
    benchmark:
        "logs/collect_runs/{prefix}.benchmark.tsv"
    wildcard_constraints:
        prefix="|".join(TRAINED_TABLES.values()),
    conda:
        WDRANK_ENV
    threads: job_threads("collect_runs")
    resources:
        **job_resources("collect_runs"),
    shell:
        "python -m wdrank collect-runs --summaries {input.summaries} --spectra {input.spectra}"
        " --runs-out {output.runs} --spectra-out {output.spectra}"
        " --provenance-out {output.provenance} > {log} 2>&1"
