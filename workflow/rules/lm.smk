# Language models: Fig. 3 (left), appendix layers, Table 1 (wdrank.experiments.lm).

LM = config["language_model"]
LM_SPACE = sweep(
    wd_attn=LM["sweep"]["wd_attn"],
    wd_mlp=LM["sweep"]["wd_mlp"],
    seed=LM["sweep"]["seeds"],
)
LM_DATA = "resources/lm/data"
# What one training run depends on, and nothing else: a run's params changing reruns it, so the sweep and the
# figure options must stay out (adding a grid value must not retrain the existing cells).
LM_RUN_SETTINGS = json.dumps(
    {
        "model": LM["model"],
        "train": LM["train"],
        "data": {"vocab_size": LM["data"]["vocab_size"]},
        "compute": LM["compute"],
    },
    sort_keys=True,
)
LM_RUNS_TABLE = "results/tables/lm_runs.csv"
LM_SPECTRA_TABLE = "results/tables/lm_head_spectra.csv"
LM_TABLE1 = [
    f"results/tables/table1_lm_perplexity.{ext}" for ext in ("csv", "md", "tex")
]
LM_TABLES = [LM_RUNS_TABLE, LM_SPECTRA_TABLE] + LM_TABLE1
LM_FIGURES = ["fig3_lm_rank_per_head", "figA_lm_rank_all_layers", "lm_rank_vs_step"]
LM_OUTPUTS = LM_TABLES + [
    f"results/figures/{name}.{ext}" for name in LM_FIGURES for ext in ("pdf", "png")
]


rule lm_corpus:
    output:
        directory("resources/lm/shakespeare"),
    log:
        "logs/lm_corpus.log",
    benchmark:
        "logs/lm_corpus.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lm_corpus")
    resources:
        **job_resources("lm_corpus"),
    params:
        sha256=LM["data"]["shakespeare_sha256"],
    shell:
        "python -m wdrank lm-corpus --sha256 {params.sha256} --out-dir {output} > {log} 2>&1"


rule lm_data:
    input:
        unpack(lm_corpus_input),
    output:
        tokenizer=f"{LM_DATA}/tokenizer.json",
        manifest=f"{LM_DATA}/manifest.json",
        tokens=expand(f"{LM_DATA}/{{split}}.bin", split=["train", "validation", "test"]),
    log:
        "logs/lm_data.log",
    benchmark:
        "logs/lm_data.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lm_data")
    resources:
        **job_resources("lm_data"),
    params:
        data=json.dumps({"data": LM["data"]}),
        corpus=lambda wildcards, input: (
            f"--corpus-dir {input.corpus}" if "corpus" in input.keys() else ""
        ),
    shell:
        "python -m wdrank lm-data --settings {params.data:q} {params.corpus}"
        " --out-dir $(dirname {output.manifest}) > {log} 2>&1"


rule lm_train:
    input:
        manifest=rules.lm_data.output.manifest,
        tokens=rules.lm_data.output.tokens,
    output:
        summary=f"results/lm/runs/{LM_SPACE.wildcard_pattern}/summary.json",
        metrics=f"results/lm/runs/{LM_SPACE.wildcard_pattern}/metrics.jsonl",
    log:
        f"logs/lm_train/{LM_SPACE.wildcard_pattern}.log",
    benchmark:
        f"logs/lm_train/{LM_SPACE.wildcard_pattern}.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lm_train")
    resources:
        **job_resources("lm_train"),
    params:
        settings=LM_RUN_SETTINGS,
        # Checkpoints are not outputs: Snakemake would delete them before a rerun, and a killed run resumes from them.
        launcher=launcher("lm_train"),
        checkpoints=f"results/lm/checkpoints/{LM_SPACE.wildcard_pattern}",
    shell:
        "{params.launcher} wdrank lm-train --settings {params.settings:q} --data-dir $(dirname {input.manifest})"
        " --wd-attn {wildcards.wd_attn} --wd-mlp {wildcards.wd_mlp} --seed {wildcards.seed}"
        " --run-dir $(dirname {output.summary}) --checkpoint-dir {params.checkpoints} > {log} 2>&1"


rule lm_spectra:
    input:
        rules.lm_train.output.summary,
    output:
        f"results/lm/runs/{LM_SPACE.wildcard_pattern}/spectra.parquet",
    log:
        f"logs/lm_spectra/{LM_SPACE.wildcard_pattern}.log",
    benchmark:
        f"logs/lm_spectra/{LM_SPACE.wildcard_pattern}.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lm_spectra")
    resources:
        **job_resources("lm_spectra"),
    params:
        rank_thresholds=RANK_THRESHOLDS,
    shell:
        "python -m wdrank lm-spectra --summary {input} --rank-thresholds {params.rank_thresholds}"
        " --out {output} > {log} 2>&1"


rule lm_tables:
    input:
        summaries=expand(
            "results/lm/runs/{params}/summary.json", params=LM_SPACE.instance_patterns
        ),
        spectra=expand(
            "results/lm/runs/{params}/spectra.parquet",
            params=LM_SPACE.instance_patterns,
        ),
    output:
        runs=LM_RUNS_TABLE,
        spectra=LM_SPECTRA_TABLE,
    log:
        "logs/lm_tables.log",
    benchmark:
        "logs/lm_tables.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lm_tables")
    resources:
        **job_resources("lm_tables"),
    shell:
        "python -m wdrank collect-runs --summaries {input.summaries} --spectra {input.spectra}"
        " --runs-out {output.runs} --spectra-out {output.spectra} > {log} 2>&1"


rule lm_report:
    input:
        runs=LM_RUNS_TABLE,
        spectra=LM_SPECTRA_TABLE,
    output:
        LM_TABLE1[1:],
        report(
            LM_TABLE1[0],
            caption="../report/table1_lm_perplexity.rst",
            category="Fig. 3 (left) and Table 1: language models",
        ),
        [
            report(
                f"results/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Fig. 3 (left) and Table 1: language models",
            )
            for name in LM_FIGURES
        ],
        [f"results/figures/{name}.pdf" for name in LM_FIGURES],
    log:
        "logs/lm_report.log",
    benchmark:
        "logs/lm_report.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lm_report")
    resources:
        **job_resources("lm_report"),
    params:
        layer=(
            ""
            if LM["figures"]["layer"] is None
            else f"--layer {LM['figures']['layer']}"
        ),
        wd_mlp=(
            ""
            if LM["figures"]["wd_mlp"] is None
            else f"--wd-mlp {LM['figures']['wd_mlp']}"
        ),
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank lm-report --runs {input.runs} --spectra {input.spectra}"
        " {params.layer} {params.wd_mlp} --rank-metric {params.rank_metric}"
        " --tables results/tables --figures results/figures > {log} 2>&1"
