# Vision Transformers: Fig. 3 (right) (wdrank.experiments.vit): data and training.

VIT = config["vision_transformer"]
VIT_SPACE = sweep("vision_transformer")
VIT_RUN = f"results/vit/runs/{VIT_SPACE.wildcard_pattern}"


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
        ATTEMPT_HEADER
        + "python -m wdrank vit-data --settings {params.data:q} {params.mnist} --hub-cache {params.hub_cache}"
        " --out-dir {output} >> {log} 2>&1"


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
        ATTEMPT_HEADER
        + "{params.launcher} wdrank train vision_transformer --settings {params.settings:q} --data-dir {input.data}"
        " --wd-attn {wildcards.wd_attn} --seed {wildcards.seed} --summary {output.summary}"
        " --metrics {output.metrics} --checkpoint-dir {params.checkpoints} {params.tracking} >> {log} 2>&1"
