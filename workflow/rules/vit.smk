# Vision Transformers: Fig. 3 (right) (wdrank.experiments.vit).

VIT = config["vision_transformer"]
VIT_SPACE = sweep("vision_transformer")
VIT_RUN = f"results/vit/runs/{VIT_SPACE.wildcard_pattern}"
VIT_TABLES = run_tables("vision_transformer")
VIT_RANK_TABLE = {ext: f"results/tables/fig3_vit_rank.{ext}" for ext in ("csv", "md")}
VIT_FIGURES = ["fig3_vit_rank", "figA_vit_rank_heatmap"]
VIT_CATEGORY = "Fig. 3 (right): Vision Transformer"
VIT_SOURCES = list(VIT_TABLES.values())
VIT_OUTPUTS = (
    VIT_SOURCES
    + list(VIT_RANK_TABLE.values())
    + [
        f"results/figures/{name}.{ext}"
        for name in VIT_FIGURES
        for ext in ("pdf", "png")
    ]
)


rule vit_data:
    input:
        unpack(
            lambda wildcards: {
                **package_input("mnist_5k", VIT["data"]["source"] == "mnist_5k"),
                **hub_inputs("vision_transformer"),
            }
        ),
    output:
        directory(f"resources/vit/{VIT['data']['source']}"),
    log:
        "logs/vit_data.log",
    benchmark:
        "logs/vit_data.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("vit_data")
    resources:
        **job_resources("vit_data"),
    params:
        hub_cache=HUB_CACHE,
        data=json.dumps(VIT["data"], sort_keys=True),
        mnist=lambda wildcards, input: (
            f"--mnist-csv {package_path('mnist_5k')}"
            if "package" in input.keys()
            else ""
        ),
    shell:
        "python -m wdrank vit-data --settings {params.data:q} {params.mnist} --hub-cache {params.hub_cache}"
        " --out-dir {output} > {log} 2>&1"


rule vit_train:
    input:
        data=rules.vit_data.output[0],
    output:
        summary=f"{VIT_RUN}/summary.json",
        metrics=f"{VIT_RUN}/metrics.jsonl",
    log:
        f"logs/vit_train/{VIT_SPACE.wildcard_pattern}.log",
    benchmark:
        f"logs/vit_train/{VIT_SPACE.wildcard_pattern}.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("vit_train")
    resources:
        **job_resources("vit_train"),
    params:
        settings=run_settings("vision_transformer"),
        launcher=launcher("vit_train"),
        # not an output, so that a rerun resumes from it (see lm_train)
        checkpoints=f"results/vit/checkpoints/{VIT_SPACE.wildcard_pattern}",
        tracking=tracking_option("vision_transformer"),
    shell:
        "{params.launcher} wdrank train vision_transformer --settings {params.settings:q} --data-dir {input.data}"
        " --wd-attn {wildcards.wd_attn} --seed {wildcards.seed} --summary {output.summary}"
        " --metrics {output.metrics} --checkpoint-dir {params.checkpoints} {params.tracking} > {log} 2>&1"


rule table_fig3_vit_rank:
    input:
        **VIT_TABLES,
        code=code("wdrank.tables"),
    output:
        csv=report(
            VIT_RANK_TABLE["csv"],
            caption="../report/fig3_vit_rank_table.rst",
            category=VIT_CATEGORY,
        ),
        md=VIT_RANK_TABLE["md"],
    log:
        "logs/table_fig3_vit_rank.log",
    benchmark:
        "logs/table_fig3_vit_rank.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("table_fig3_vit_rank")
    resources:
        **job_resources("table_fig3_vit_rank"),
    params:
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank table fig3_vit_rank --runs {input.runs} --spectra {input.spectra}"
        " --rank-metric {params.rank_metric} --csv {output.csv} --md {output.md} > {log} 2>&1"


rule fig3_vit_rank:
    input:
        **VIT_TABLES,
        code=code("wdrank.plots.vit"),
    output:
        **figure_files("fig3_vit_rank", "../report/fig3_vit_rank.rst", VIT_CATEGORY),
    log:
        "logs/fig3_vit_rank.log",
    benchmark:
        "logs/fig3_vit_rank.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("fig3_vit_rank")
    resources:
        **job_resources("fig3_vit_rank"),
    params:
        width=FIGURE_WIDTH,
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank figure fig3_vit_rank --runs {input.runs} --spectra {input.spectra}"
        " --rank-metric {params.rank_metric} --width {params.width} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule figA_vit_rank_heatmap:
    input:
        **VIT_TABLES,
        code=code("wdrank.plots.vit"),
    output:
        **figure_files(
            "figA_vit_rank_heatmap",
            "../report/figA_vit_rank_heatmap.rst",
            VIT_CATEGORY,
        ),
    log:
        "logs/figA_vit_rank_heatmap.log",
    benchmark:
        "logs/figA_vit_rank_heatmap.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("figA_vit_rank_heatmap")
    resources:
        **job_resources("figA_vit_rank_heatmap"),
    params:
        width=FIGURE_WIDTH,
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank figure figA_vit_rank_heatmap --runs {input.runs} --spectra {input.spectra}"
        " --rank-metric {params.rank_metric} --width {params.width} --pdf {output.pdf} --png {output.png} > {log} 2>&1"
