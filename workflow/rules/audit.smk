# Fig. 4: audit of pretrained models (wdrank.audit), and of checkpoints along training (wdrank.trajectory).

AUDIT_MODEL_PATTERN = "|".join(map(re.escape, AUDIT_MODELS)) if AUDIT_MODELS else "^$"
AUDIT_TRAJECTORY_PATTERN = (
    "|".join(map(re.escape, AUDIT_TRAJECTORIES)) if AUDIT_TRAJECTORIES else "^$"
)
AUDIT_TABLE = "results/tables/audit_{model}.csv"
AUDIT_TRAJECTORY_TABLE = "results/tables/audit_trajectory_{model}.csv"
AUDIT_SUMMARY = "results/tables/fig4_audit_summary.csv"
AUDIT_CATEGORY = "Fig. 4: pretrained models"
AUDIT_SOURCES = expand(AUDIT_TABLE, model=AUDIT_MODELS) + expand(
    AUDIT_TRAJECTORY_TABLE, model=AUDIT_TRAJECTORIES
)
AUDIT_OUTPUTS = (
    AUDIT_SOURCES
    + expand(
        "results/figures/fig4_audit_{model}.{ext}",
        model=AUDIT_MODELS,
        ext=("pdf", "png"),
    )
    + expand(
        "results/figures/audit_trajectory_{model}.{ext}",
        model=AUDIT_TRAJECTORIES,
        ext=("pdf", "png"),
    )
    + ([AUDIT_SUMMARY] if AUDIT_MODELS else [])
)
# The audit command reads a hub model from the cache that hub_download filled, never from the network.
AUDIT_SHELL = (
    "HF_HUB_OFFLINE=1 python -m wdrank audit {params.path:q} --name {wildcards.model} {params.options}"
    " --rank-thresholds {params.rank_thresholds} --table {output.table}"
    " --provenance-out {output.provenance} > {log} 2>&1"
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


rule audit_trajectory:
    input:
        unpack(audit_input),
    output:
        table=AUDIT_TRAJECTORY_TABLE,
        provenance=provenance_of(AUDIT_TRAJECTORY_TABLE),
    log:
        "logs/audit_trajectory/{model}.log",
    benchmark:
        "logs/audit_trajectory/{model}.benchmark.tsv"
    wildcard_constraints:
        model=AUDIT_TRAJECTORY_PATTERN,
    conda:
        WDRANK_ENV
    threads: job_threads("audit_trajectory")
    resources:
        **job_resources("audit_trajectory"),
    params:
        path=audit_path,
        options=audit_options,
        rank_thresholds=RANK_THRESHOLDS,
    shell:
        AUDIT_SHELL


rule audit_trajectory_figure:
    input:
        code=code("wdrank.plots.audit"),
        table=AUDIT_TRAJECTORY_TABLE,
    output:
        pdf="results/figures/audit_trajectory_{model}.pdf",
        png=report(
            "results/figures/audit_trajectory_{model}.png",
            caption="../report/audit_trajectory.rst",
            category=AUDIT_CATEGORY,
            labels={"model": "{model}"},
        ),
    log:
        "logs/audit_trajectory_figure/{model}.log",
    benchmark:
        "logs/audit_trajectory_figure/{model}.benchmark.tsv"
    wildcard_constraints:
        model=AUDIT_TRAJECTORY_PATTERN,
    conda:
        WDRANK_ENV
    threads: job_threads("audit_trajectory_figure")
    resources:
        **job_resources("audit_trajectory_figure"),
    params:
        width=FIGURE_WIDTH,
        note=lambda wildcards: shlex.quote(
            AUDIT_TRAJECTORIES[wildcards.model].get("note", "")
        ),
    shell:
        "python -m wdrank figure audit_trajectory --table {input.table} --note {params.note}"
        " --width {params.width} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule fig4_audit:
    input:
        code=code("wdrank.plots.audit"),
        table=AUDIT_TABLE,
    output:
        pdf="results/figures/fig4_audit_{model}.pdf",
        png=report(
            "results/figures/fig4_audit_{model}.png",
            caption="../report/fig4_audit.rst",
            category=AUDIT_CATEGORY,
            labels={"model": "{model}"},
        ),
    log:
        "logs/fig4_audit/{model}.log",
    benchmark:
        "logs/fig4_audit/{model}.benchmark.tsv"
    wildcard_constraints:
        model=AUDIT_MODEL_PATTERN,
    conda:
        WDRANK_ENV
    threads: job_threads("fig4_audit")
    resources:
        **job_resources("fig4_audit"),
    params:
        width=FIGURE_WIDTH,
        note=lambda wildcards: shlex.quote(
            AUDIT_MODELS[wildcards.model].get("note", "")
        ),
    shell:
        "python -m wdrank figure fig4_audit --table {input.table} --note {params.note}"
        " --width {params.width} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule fig4_audit_summary:
    input:
        code=code("wdrank.tables"),
        tables=expand(AUDIT_TABLE, model=AUDIT_MODELS),
    output:
        report(
            AUDIT_SUMMARY,
            caption="../report/fig4_audit_summary.rst",
            category=AUDIT_CATEGORY,
        ),
    log:
        "logs/fig4_audit_summary.log",
    benchmark:
        "logs/fig4_audit_summary.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("fig4_audit_summary")
    resources:
        **job_resources("fig4_audit_summary"),
    shell:
        "python -m wdrank table fig4_audit_summary {input.tables} --csv {output} > {log} 2>&1"
