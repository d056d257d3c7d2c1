# On a cluster: which jobs go to the compute nodes, how a job preempted for good comes back, and which training
# cells did not finish. Included last: it reads every rule defined before it.

from wdrank.slurm import poll_through_settle_preemptions

# Every rule but those that compute runs on the submitting host (common.smk, CLUSTER_RULES).
workflow.localrules(*sorted({rule.name for rule in workflow.rules} - CLUSTER_RULES))


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
        # The plugin alone would wait forever for a job preempted and cancelled (PreemptMode=CANCEL): its polls now
        # requeue such a job, or report it failed where SLURM refuses (wdrank.slurm).
        try:
            poll_through_settle_preemptions(set(TRAINING_RULES.values()))
        except RuntimeError as error:
            sys.exit(f"wdrank: {error}")


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
