"""Deliberate bugs in the code users rely on most, and the tests that must catch each: `python tests/mutations.py`.

Each mutation replaces one exact piece of source text in a copy of src/wdrank, runs the tests named beside it against
that copy (first on PYTHONPATH), and is caught only if they fail. A mutation whose text is no longer in the source
counts as not caught: the code moved, and the list must follow it. tests/test_mutations.py runs each one in the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    module: str  # file under src/wdrank/
    original: str  # exact source text, found once
    mutated: str
    tests: tuple[str, ...]  # pytest node ids, relative to the repository


MUTATIONS = (
    Mutation("layer mix-up in the head split: every layer reads layer 0's weights", "heads.py",
             "layer_names = [prefix + name.format(layer=layer) for name in spec.names]",
             "layer_names = [prefix + name.format(layer=0) for name in spec.names]",
             ("tests/test_heads.py::test_factors_reproduce_the_models_own_attention",)),
    Mutation("Q and K swapped in the QK product", "heads.py",
             'yield LayerFactors(layer, "QK", q, k, (stored[id(q.weight)], stored[id(k.weight)]))',
             'yield LayerFactors(layer, "QK", k, q, (stored[id(k.weight)], stored[id(q.weight)]))',
             ("tests/test_heads.py::test_factors_reproduce_the_models_own_attention",)),
    Mutation("micro-batch rows ignored: every micro-batch is the whole batch", "experiments/lm.py",
             "return self._windows(self.train_tokens, starts[rows])",
             "return self._windows(self.train_tokens, starts)",
             ("tests/test_training.py::test_micro_batches_accumulate_to_the_full_batch_gradient",)),
    Mutation("a resume that skips the optimizer state", "checkpoint.py",
             'optimizer.load_state_dict(saved["optimizer"])',
             'saved["optimizer"]',
             ("tests/test_tracking.py::test_a_resumed_run_and_a_run_tracked_after_it_finished_show_every_step_once",)),
    Mutation("Holm's step-down in the wrong order (largest p first)", "statistics.py",
             "valid = p_values.dropna().sort_values()",
             "valid = p_values.dropna().sort_values(ascending=False)",
             ("tests/test_statistics.py::test_holm_step_down",)),
    Mutation("balance computed as AᵀA + BᵀB", "spectra.py",
             "@ r_a - np.swapaxes(r_b, -1, -2) @ r_b",
             "@ r_a + np.swapaxes(r_b, -1, -2) @ r_b",
             ("tests/test_spectra.py::test_summary_of_unbalanced_factors_matches_the_definitions",
              "tests/test_spectra.py::test_gap_is_nonnegative_and_vanishes_exactly_for_balanced_factors")),
    Mutation("zero spread decides again (p = 0 for identical differences)", "statistics.py",
             "p_value = 1.0 if mean == 0 else 2.0 ** (1 - n)",
             "p_value = float(mean == 0)",
             ("tests/test_statistics.py::test_two_seeds_of_identical_differences_are_never_beyond_every_interval",)),
    Mutation("overlapping safetensors tensors accepted", "weights.py",
             "        if begin < end:\n",
             "        if begin < end and False:\n",
             ("tests/test_audit.py::test_bad_input_exits_1_with_one_line_naming_the_problem[overlapping tensors]",)),
    Mutation("a host read in every training step (a GPU stall)", "train.py",
             "            divergence.observe(step, loss)\n",
             "            divergence.observe(step, loss)\n            bool(loss > 0)\n",
             ("tests/test_training.py::test_the_loop_reads_device_values_only_at_log_steps",)),
)


def caught(mutation: Mutation) -> tuple[bool, str]:
    """(whether the named tests fail on the mutated copy, the last lines pytest printed)."""
    with tempfile.TemporaryDirectory(prefix="wdrank-mutation-") as scratch:
        src = Path(scratch) / "src"
        shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
        path = src / "wdrank" / mutation.module
        text = path.read_text(encoding="utf-8")
        if text.count(mutation.original) != 1:
            return False, f"{mutation.module}: the text to mutate is not there exactly once (the code moved)"
        path.write_text(text.replace(mutation.original, mutation.mutated), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                 *mutation.tests], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join(result.stdout.strip().splitlines()[-3:])
    return result.returncode == 1, tail  # 1: tests failed (2-5: could not run them, which catches nothing)


def main() -> int:
    survivors = 0
    for mutation in MUTATIONS:
        found, tail = caught(mutation)
        survivors += not found
        print(f"{'caught  ' if found else 'SURVIVED'} {mutation.name}  <- {', '.join(mutation.tests)}")
        if not found:
            print(f"         {tail}")
    print(f"{len(MUTATIONS) - survivors} of {len(MUTATIONS)} mutations caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
