# Language models: Fig. 3 (left), appendix layers, Table 1 (wdrank.experiments.lm): data and training.

LM = config["language_model"]
LM_SPACE = sweep("language_model")
LM_RUN = f"results/lm/runs/{LM_SPACE.wildcard_pattern}"


rule lm_data:
    input:
        unpack(text_data_inputs),
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
        corpus=corpus_option,
    shell:
        TEXT_DATA_COMMAND


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
        ATTEMPT_HEADER
        + "{params.launcher} wdrank train language_model --settings {params.settings:q} --data-dir {input.data}"
        " --wd-attn {wildcards.wd_attn} --wd-mlp {wildcards.wd_mlp} --seed {wildcards.seed}"
        " --summary {output.summary} --metrics {output.metrics} --checkpoint-dir {params.checkpoints} {params.tracking} >> {log} 2>&1"
