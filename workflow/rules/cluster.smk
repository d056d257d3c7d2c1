# On a cluster: which jobs go to the compute nodes, how a job preempted for good comes back, and which training
# cells did not finish. Included last: it reads every rule defined before it.

# Every rule but those that compute runs on the submitting host (common.smk, CLUSTER_RULES).
workflow.localrules(*sorted({rule.name for rule in workflow.rules} - CLUSTER_RULES))


def bring_back_preempted_jobs():
    """Make the SLURM plugin's status polls requeue a job that was preempted and cancelled (PreemptMode=CANCEL), or
    report it failed where SLURM refuses (wdrank.slurm): the plugin alone would wait for it forever.
    """
    import snakemake_executor_plugin_slurm as plugin

    from wdrank.slurm import settle_preemptions

    poll = getattr(plugin, "query_job_status", None)
    if poll is None:
        sys.exit(
            "wdrank: this snakemake-executor-plugin-slurm has no query_job_status; preempted jobs need the version "
            'that pyproject.toml names (pip install -e ".[slurm]")'
        )

    async def poll_and_settle(command, logger):
        states, seconds = await poll(command, logger)
        if states:
            states = settle_preemptions(states, logger.warning)
        return states, seconds

    plugin.query_job_status = poll_and_settle


def unfinished_cells():
    """(rule, cell, log) of each training cell of an enabled experiment that started (it has a log) and has no
    summary: it failed, or was stopped."""
    for section, rule_name in TRAINING_RULES.items():
        if not config[section]["enabled"] or config["from_cache"]:
            continue
        for point in sweep(section).instance_patterns:
            summary = f"results/{EXPERIMENT_NAMES[section]}/runs/{point}/summary.json"
            log = f"logs/{rule_name}/{point}.log"
            if os.path.exists(log) and not os.path.exists(summary):
                yield rule_name, point, log


def last_line(path):
    """The last line that says something: where a training log ends, its error."""
    with open(path, errors="replace") as log:
        lines = log.read().split("\n")
    return next((line.strip() for line in reversed(lines) if line.strip()), "(empty)")


onstart:
    if (
        workflow.executor_plugin is not None
        and workflow.executor_plugin.name == "slurm"
    ):
        bring_back_preempted_jobs()


onerror:
    cells = list(unfinished_cells())
    if cells:
        print(
            f"wdrank: {len(cells)} training cell{'s' if len(cells) > 1 else ''} did not finish:",
            file=sys.stderr,
        )
        for rule_name, point, log in cells:
            print(
                f"  {rule_name} {point}\n    log: {log}\n    {last_line(log)}",
                file=sys.stderr,
            )
        print(
            "The tables and figures of an experiment wait for every cell of its grid (its runs are compared seed by "
            "seed). Run the same command again once the cause is fixed: each cell resumes from its last checkpoint.",
            file=sys.stderr,
        )
