# Figures from cached results: results/cache/ holds the gzipped result tables of the default run (committed).
#   snakemake --cores all --config from_cache=True    # every figure and derived table, no training, in seconds
#   snakemake --cores 1 write_cache                    # after a full run: refresh the cache from results/tables/

CACHE_DIR = "results/cache"
# names of the tables (results/tables/<name>.csv) every figure is drawn from
CACHED = [
    os.path.basename(path).removesuffix(".csv")
    for path in enabled_files("sources") + enabled_files("provenance")
]
CACHE_FILES = [f"{CACHE_DIR}/{name}.csv.gz" for name in CACHED]
CACHED_TABLES = [f"results/tables/{name}.csv" for name in CACHED]

if config["from_cache"]:
    missing = [path for path in CACHE_FILES if not os.path.exists(path)]
    if missing:
        sys.exit(
            f"wdrank: from_cache=True, but these cached tables are missing: {', '.join(missing)}; "
            "run without from_cache (or disable the experiments they belong to)"
        )
    # A restore never replaces a result of a real run: cached and real tables share their paths (every figure rule
    # reads one place), so where a table differs from its cached copy, nothing starts.
    from wdrank.aggregate import tables_differing_from_cache

    real = tables_differing_from_cache(list(zip(CACHE_FILES, CACHED_TABLES)))
    if real:
        sys.exit(
            f"wdrank: from_cache=True would replace results of a real run that differ from the cache: "
            f"{', '.join(real)}; draw the cached figures in another folder (copy results/cache/ there and add "
            "--directory DIR), or move results/tables/ aside"
        )

    localrules:
        restore_cached_table,

    rule restore_cached_table:
        input:
            f"{CACHE_DIR}/{{table}}.csv.gz",
        output:
            "results/tables/{table}.csv",
        log:
            "logs/restore_cached_table/{table}.log",
        benchmark:
            "logs/restore_cached_table/{table}.benchmark.tsv"
        wildcard_constraints:
            table="|".join(map(re.escape, CACHED)) if CACHED else "^$",
        conda:
            WDRANK_ENV
        threads: job_threads("restore_cached_table")
        resources:
            **job_resources("restore_cached_table"),
        shell:
            f"{ATTEMPT_HEADER}gzip -dc {{input}} > {{output}} 2>> {{log}}"

    # Where a cached table exists it wins over the rule that would compute it from training runs.
    ruleorder: restore_cached_table > factorized_table
    ruleorder: restore_cached_table > collect_runs
    ruleorder: restore_cached_table > learning_curves_table
    ruleorder: restore_cached_table > scalar_pair
    ruleorder: restore_cached_table > audit_model
    ruleorder: restore_cached_table > audit_trajectory_table

else:

    localrules:
        write_cache,

    rule write_cache:
        input:
            CACHED_TABLES,
        output:
            CACHE_FILES,
        log:
            "logs/write_cache.log",
        benchmark:
            "logs/write_cache.benchmark.tsv"
        conda:
            WDRANK_ENV
        threads: job_threads("write_cache")
        resources:
            **job_resources("write_cache"),
        params:
            grid=json.dumps(
                {
                    run_tables(EXPERIMENT_NAMES[section])["runs"]: sweep_values(
                        config, section
                    )
                    for section in TRAINED
                    if config[section]["enabled"]
                }
            ),
            # a function: the committed config.yaml is read only when write_cache runs
            changes=lambda wildcards: " ".join(default_config_changes()),
        shell:
            ATTEMPT_HEADER
            + "python -m wdrank write-cache {input} --out {output} --grid {params.grid:q}"
            " --config-changes {params.changes} >> {log} 2>&1"
