# LoRA fine-tuning across λ_LoRA (wdrank.experiments.lora): the adapters of a pretrained LM, audited along training
# by the shared run_spectra rule (each checkpoint is an adapter folder). A packaged base model (lora.base.package)
# fine-tunes on the language model's corpus prepared with its own tokenizer (lora_data).

LORA = config["lora"]
LORA_SPACE = sweep("lora")
LORA_RUN = f"results/lora/runs/{LORA_SPACE.wildcard_pattern}"
# The sweep axes that set a run's settings (r, lr), as the training command's --set options.
LORA_SET = " ".join(
    f"--set {axis}={{wildcards.{axis}}}" for axis in TRAINED["lora"].setting_axes
)


rule lora_data:
    input:
        unpack(
            lambda wildcards: {
                **text_data_inputs(wildcards),
                "base_package": package_dir(LORA["base"]["package"]),
            }
        ),
    output:
        directory("resources/lora/data"),
    log:
        "logs/lora_data.log",
    benchmark:
        "logs/lora_data.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("lora_data")
    resources:
        **job_resources("lora_data"),
    params:
        hub_cache=HUB_CACHE,
        # the language model's corpus and split, tokenized by the packaged base model's own tokenizer
        data=lambda wildcards: json.dumps(
            {**LM["data"], "tokenizer": package_path(LORA["base"]["package"])},
            sort_keys=True,
        ),
        corpus=corpus_option,
    shell:
        TEXT_DATA_COMMAND


rule lora_train:
    input:
        unpack(lora_base),
    output:
        summary=f"{LORA_RUN}/summary.json",
        metrics=f"{LORA_RUN}/metrics.jsonl",
    log:
        f"logs/lora_train/{LORA_SPACE.wildcard_pattern}.log",
    benchmark:
        f"logs/lora_train/{LORA_SPACE.wildcard_pattern}.benchmark.tsv"
    # as soon as its base run is trained, not after every other training job: no LoRA tail at the end of a run
    priority: 1
    conda:
        WDRANK_ENV
    threads: job_threads("lora_train")
    resources:
        **job_resources("lora_train"),
    params:
        settings=run_settings("lora"),
        base_model=lora_base_model,
        launcher=launcher("lora_train"),
        # Checkpoints are not outputs: Snakemake would delete them before a rerun, and a killed run resumes from them.
        checkpoints=f"results/lora/checkpoints/{LORA_SPACE.wildcard_pattern}",
        tracking=tracking_option("lora"),
    shell:
        ATTEMPT_HEADER
        + "{params.launcher} wdrank train lora --settings {params.settings:q} --data-dir {input.data}"
        " --base-model {params.base_model} --wd-lora {wildcards.wd_lora} "
        + LORA_SET
        + " --seed {wildcards.seed}"
        " --summary {output.summary} --metrics {output.metrics} --checkpoint-dir {params.checkpoints} {params.tracking} >> {log} 2>&1"
