"""Deliberate bugs in the code users rely on most, and the tests that must catch each: `python tests/mutations.py`.

Each mutation replaces one exact piece of text in a copy of the repository (its Snakefile, workflow, src and tests:
a workflow test named beside a mutation runs the mutated copy's Snakefile, which imports the copy's package). A
mutation counts as caught only when
- its text is in the file exactly once (else the code moved, and the list must follow it);
- the tests named beside it all pass on the unmutated copy (a test that fails anyway catches nothing);
- on the mutated copy, at least one of them fails on an assertion: an `assert`, a `pytest.fail`, a `pytest.raises`
  that saw nothing raised. An import, collection or fixture error, or any other exception, catches nothing.
tests/test_mutations.py runs each one in the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a copy leaves out: version control, caches, and what a run makes (the committed results/cache is kept).
NOT_COPIED = {".git", "__pycache__", ".pytest_cache", ".snakemake", "resources", "logs", ".ruff_cache"}
# The messages pytest gives a failure raised by a test's own checks: `assert` (numpy's and torch's testing helpers
# raise AssertionError too), `pytest.fail` and a `pytest.raises` that saw nothing.
ASSERTION_FAILURES = ("AssertionError", "assert ", "Failed: ")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # file in the repository
    original: str  # exact text, found once
    mutated: str
    tests: tuple[str, ...]  # pytest node ids, relative to the repository


@dataclass(frozen=True)
class Verdict:
    caught: bool
    reason: str  # why, in a line or two (pytest's last lines where it ran)


MUTATIONS = (
    Mutation("layer mix-up in the head split: every layer reads layer 0's weights", "src/wdrank/heads.py",
             "layer_names = [prefix + name.format(layer=layer) for name in spec.names]",
             "layer_names = [prefix + name.format(layer=0) for name in spec.names]",
             ("tests/test_heads.py::test_factors_reproduce_the_models_own_attention",)),
    Mutation("Q and K swapped in the QK product", "src/wdrank/heads.py",
             'yield LayerFactors(layer, "QK", q, k, (stored[id(q.weight)], stored[id(k.weight)]))',
             'yield LayerFactors(layer, "QK", k, q, (stored[id(k.weight)], stored[id(q.weight)]))',
             ("tests/test_heads.py::test_factors_reproduce_the_models_own_attention",)),
    Mutation("micro-batch rows ignored: every micro-batch is the whole batch", "src/wdrank/experiments/lm.py",
             "return self._windows(self.train_tokens, starts[rows])",
             "return self._windows(self.train_tokens, starts)",
             ("tests/test_training.py::test_micro_batches_accumulate_to_the_full_batch_gradient",)),
    Mutation("a resume that skips the optimizer state", "src/wdrank/checkpoint.py",
             'optimizer.load_state_dict(saved["optimizer"])',
             'saved["optimizer"]',
             ("tests/test_tracking.py::test_a_resumed_run_and_a_run_tracked_after_it_finished_show_every_step_once",)),
    Mutation("Holm's step-down in the wrong order (largest p first)", "src/wdrank/statistics.py",
             "valid = p_values.dropna().sort_values()",
             "valid = p_values.dropna().sort_values(ascending=False)",
             ("tests/test_statistics.py::test_holm_step_down",)),
    Mutation("balance computed as AᵀA + BᵀB", "src/wdrank/spectra.py",
             "@ r_a - np.swapaxes(r_b, -1, -2) @ r_b",
             "@ r_a + np.swapaxes(r_b, -1, -2) @ r_b",
             ("tests/test_spectra.py::test_summary_of_unbalanced_factors_matches_the_definitions",
              "tests/test_spectra.py::test_gap_is_nonnegative_and_vanishes_exactly_for_balanced_factors")),
    Mutation("zero spread decides again (p = 0 for identical differences)", "src/wdrank/statistics.py",
             "p_value = 1.0 if mean == 0 else 2.0 ** (1 - n)",
             "p_value = float(mean == 0)",
             ("tests/test_statistics.py::test_two_seeds_of_identical_differences_are_never_beyond_every_interval",)),
    Mutation("overlapping safetensors tensors accepted", "src/wdrank/weights.py",
             "        if begin < end:\n",
             "        if begin < end and False:\n",
             ("tests/test_audit.py::test_bad_input_exits_1_with_one_line_naming_the_problem[overlapping tensors]",)),
    Mutation("a host read in every training step (a GPU stall)", "src/wdrank/train.py",
             "            divergence.observe(step, loss)\n",
             "            divergence.observe(step, loss)\n            bool(loss > 0)\n",
             ("tests/test_training.py::test_the_loop_reads_device_values_only_at_log_steps",)),
    Mutation("the chunked loss's backward ignores the gradient it is handed", "src/wdrank/models/next_token.py",
             "None if grad_hidden is None else grad_hidden * grad_output,",
             "None if grad_hidden is None else grad_hidden,",
             ("tests/test_gpu_paths.py::test_chunked_gradients_follow_the_gradient_handed_back",)),
    Mutation("evaluation under no_grad computes the output layer's weight gradient",
             "src/wdrank/models/next_token.py",
             "if grad_enabled and ctx.needs_input_grad[1]",
             "if ctx.needs_input_grad[1]",
             ("tests/test_gpu_paths.py::test_chunked_loss_computes_gradients_only_in_grad_mode",)),
    Mutation("the SLURM plugin's status polls no longer routed through the preemption fix", "src/wdrank/slurm.py",
             "    plugin.query_job_status = poll_and_settle\n",
             "    plugin.query_job_status_settled = poll_and_settle\n",
             ("tests/test_slurm_states.py::test_the_plugins_own_status_check_goes_through_the_preemption_fix",)),
    Mutation("a job SLURM preempted and cancelled taken for one still running", "src/wdrank/slurm.py",
             "if now not in (None, PREEMPTED):",
             "if now is not None:",
             ("tests/test_slurm_states.py::test_a_job_preempted_and_cancelled_is_requeued",)),
    Mutation("a resumed run's learning curve not cut back to the step it resumes from", "src/wdrank/metrics_log.py",
             'kept = [line for line in self.records_text() if json.loads(line)["step"] <= step]',
             "kept = self.records_text()",
             ("tests/test_training.py::test_a_resumed_learning_curve_holds_each_step_once",)),
    Mutation("a cached table restored over a real one that differs from it", "src/wdrank/aggregate.py",
             "and gzip.decompress(Path(cached).read_bytes()) != Path(table).read_bytes()]",
             "and gzip.decompress(Path(cached).read_bytes()) == Path(table).read_bytes()]",
             ("tests/test_cache.py::test_a_restore_would_replace_exactly_the_tables_that_differ_from_the_cache",
              "tests/test_workflow.py::test_a_restore_from_the_cache_never_replaces_a_real_result")),
)


def ignore_outputs(repo: Path):
    """A `shutil.copytree` filter that leaves out NOT_COPIED everywhere and results/ but its cache."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        dropped = {name for name in names if name in NOT_COPIED or name.endswith(".egg-info")}
        if Path(folder) == repo / "results":
            dropped |= set(names) - {"cache"}
        return dropped
    return ignore


def copy_repository(repo: Path, destination: Path) -> Path:
    """The repository's working tree, without outputs, at `destination`."""
    shutil.copytree(repo, destination, ignore=ignore_outputs(repo), symlinks=True)
    return destination


def run_tests(copy: Path, tests: Iterable[str]) -> tuple[dict[str, str], str]:
    """Run `tests` in `copy` (its src first on the path): ({node id: 'passed' | 'skipped' | the failure's or
    error's message prefixed by its kind}, pytest's last lines). A test that never ran is missing from the dict."""
    report = copy / "mutation-report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(copy / "src"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                             f"--junitxml={report}", *tests], cwd=copy, env=env, capture_output=True, text=True,
                            timeout=900)
    tail = "\n".join(result.stdout.strip().splitlines()[-3:])
    if not report.exists():
        return {}, tail
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        node = f"{module}.py::{case.get('name')}" if module else case.get("name", "")
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if problem is None:
            outcomes[node] = "passed"
        elif problem.tag == "skipped":
            outcomes[node] = "skipped"
        else:
            outcomes[node] = f"{problem.tag}: {problem.get('message', '')}"
    return outcomes, tail


def outcomes_of(test: str, outcomes: dict[str, str]) -> list[str]:
    """The outcomes of the cases a node id names: itself, or each of its parameter sets."""
    return [outcome for node, outcome in outcomes.items() if node == test or node.startswith(f"{test}[")]


def failed_on_an_assertion(outcome: str) -> bool:
    return outcome.startswith("failure: ") and outcome.removeprefix("failure: ").startswith(ASSERTION_FAILURES)


def check_unmutated(tests: Iterable[str], repo: Path = REPO) -> dict[str, str]:
    """{node id: outcome} of `tests` on an unmutated copy of `repo` ('not run' for one pytest never reached)."""
    tests = sorted(set(tests))
    with tempfile.TemporaryDirectory(prefix="wdrank-unmutated-") as scratch:
        outcomes, tail = run_tests(copy_repository(repo, Path(scratch) / "repo"), tests)
    verdicts = {}
    for test in tests:
        cases = outcomes_of(test, outcomes)
        failing = [outcome for outcome in cases if outcome != "passed"]
        verdicts[test] = failing[0] if failing else "passed" if cases else f"not run ({tail})"
    return verdicts


def caught(mutation: Mutation, unmutated: dict[str, str], repo: Path = REPO) -> Verdict:
    """Whether the tests named beside `mutation`, all passing on the unmutated copy (`unmutated`: check_unmutated's
    outcomes), fail on an assertion on the mutated copy."""
    failing = {test: unmutated.get(test, "not checked") for test in mutation.tests}
    failing = {test: outcome for test, outcome in failing.items() if outcome != "passed"}
    if failing:
        return Verdict(False, "does not pass before the mutation: "
                       + "; ".join(f"{test} ({outcome})" for test, outcome in failing.items()))
    with tempfile.TemporaryDirectory(prefix="wdrank-mutation-") as scratch:
        copy = copy_repository(repo, Path(scratch) / "repo")
        path = copy / mutation.path
        text = path.read_text(encoding="utf-8")
        if text.count(mutation.original) != 1:
            return Verdict(False, f"{mutation.path}: the text to mutate is not there exactly once (the code moved)")
        path.write_text(text.replace(mutation.original, mutation.mutated), encoding="utf-8")
        outcomes, tail = run_tests(copy, mutation.tests)
    if any(failed_on_an_assertion(outcome) for outcome in outcomes.values()):
        return Verdict(True, tail)
    seen = "; ".join(f"{test}: {outcome.splitlines()[0] if outcome else ''}" for test, outcome in outcomes.items())
    return Verdict(False, f"no named test failed on an assertion ({seen or 'none ran'})\n{tail}")


def main() -> int:
    unmutated = check_unmutated(test for mutation in MUTATIONS for test in mutation.tests)
    survivors = 0
    for mutation in MUTATIONS:
        verdict = caught(mutation, unmutated)
        survivors += not verdict.caught
        print(f"{'caught  ' if verdict.caught else 'SURVIVED'} {mutation.name}  <- {', '.join(mutation.tests)}")
        if not verdict.caught:
            print(f"         {verdict.reason}")
    print(f"{len(MUTATIONS) - survivors} of {len(MUTATIONS)} mutations caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
