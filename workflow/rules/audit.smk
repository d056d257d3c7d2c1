# Fig. 4: audit of pretrained models (wdrank.audit), and of checkpoints along training (wdrank.trajectory): the
# per-head tables, one per model (its figures: products.smk).

AUDIT_MODEL_PATTERN = "|".join(map(re.escape, AUDIT_MODELS)) if AUDIT_MODELS else "^$"
AUDIT_TRAJECTORY_PATTERN = (
    "|".join(map(re.escape, AUDIT_TRAJECTORIES)) if AUDIT_TRAJECTORIES else "^$"
)
AUDIT_TABLE = "results/tables/audit_{model}.csv"
AUDIT_TRAJECTORY_TABLE = "results/tables/audit_trajectory_{model}.csv"
AUDIT_SOURCES = expand(AUDIT_TABLE, model=AUDIT_MODELS) + expand(
    AUDIT_TRAJECTORY_TABLE, model=AUDIT_TRAJECTORIES
)
# The audit command reads a hub model from the cache that hub_download filled, never from the network.
AUDIT_SHELL = (
    ATTEMPT_HEADER
    + "HF_HUB_OFFLINE=1 python -m wdrank audit {params.path:q} --name {wildcards.model} {params.options}"
    " --rank-thresholds {params.rank_thresholds} --table {output.table}"
    " --provenance-out {output.provenance} >> {log} 2>&1"
)


rule audit_model:
    input:
        unpack(audit_input),
    output:
        table=AUDIT_TABLE,
        provenance=provenance_of(AUDIT_TABLE),
    log:
        "logs/audit_model/{model}.log",
    benchmark:
        "logs/audit_model/{model}.benchmark.tsv"
    wildcard_constraints:
        model=AUDIT_MODEL_PATTERN,
    conda:
        WDRANK_ENV
    threads: job_threads("audit_model")
    resources:
        **job_resources("audit_model"),
    params:
        path=audit_path,
        options=audit_options,
        rank_thresholds=RANK_THRESHOLDS,
    shell:
        AUDIT_SHELL


rule audit_trajectory_table:
    input:
        unpack(audit_input),
    output:
        table=AUDIT_TRAJECTORY_TABLE,
        provenance=provenance_of(AUDIT_TRAJECTORY_TABLE),
    log:
        "logs/audit_trajectory_table/{model}.log",
    benchmark:
        "logs/audit_trajectory_table/{model}.benchmark.tsv"
    wildcard_constraints:
        model=AUDIT_TRAJECTORY_PATTERN,
    conda:
        WDRANK_ENV
    threads: job_threads("audit_trajectory_table")
    resources:
        **job_resources("audit_trajectory_table"),
    params:
        path=audit_path,
        options=audit_options,
        rank_thresholds=RANK_THRESHOLDS,
    shell:
        AUDIT_SHELL
