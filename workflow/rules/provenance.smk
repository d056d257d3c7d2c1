# The provenance of every result (wdrank.provenance): one table of the runs behind every result table, in the report,
# and a warning at the end of the run for each run whose code, libraries or data differ from the rest of its table.

PROVENANCE_TABLES = enabled_files("provenance")
PROVENANCE_SUMMARY = "results/tables/provenance.csv"


rule provenance:
    input:
        code=code("wdrank.provenance"),
        tables=PROVENANCE_TABLES,
    output:
        report(
            PROVENANCE_SUMMARY,
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    log:
        "logs/provenance.log",
    benchmark:
        "logs/provenance.benchmark.tsv"
    conda:
        WDRANK_ENV
    threads: job_threads("provenance")
    resources:
        **job_resources("provenance"),
    params:
        names=[
            os.path.basename(path).removesuffix("_provenance.csv")
            for path in PROVENANCE_TABLES
        ],
    shell:
        ATTEMPT_HEADER
        + "python -m wdrank provenance {input.tables} --names {params.names} --out {output} >> {log} 2>&1"


onsuccess:
    if os.path.exists(PROVENANCE_SUMMARY):
        from wdrank.provenance import read_table, mixed_warnings

        for line in mixed_warnings(
            read_table(PROVENANCE_SUMMARY), PROVENANCE_SUMMARY
        ):
            print(line, file=sys.stderr)
