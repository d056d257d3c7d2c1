"""The guard of the fast loop (conftest.fast_tests_stay_fast): a test outside the slow tier that starts Snakemake
fails, naming the marker it lacks; marked slow, the same test runs."""

import textwrap

from conftest import REPO, starts_snakemake

pytest_plugins = ("pytester",)


def test_both_ways_of_starting_snakemake_are_recognised():
    assert starts_snakemake(["/venv/bin/python", "-m", "snakemake", "-n"])
    assert starts_snakemake(["snakemake", "--cores", "2"]) and starts_snakemake("snakemake --lint")
    assert not starts_snakemake(["python", "-m", "wdrank", "train"]) and not starts_snakemake(["snakefmt", "x"])


def test_an_unmarked_test_that_starts_snakemake_fails_naming_the_marker(pytester):
    pytester.makeini('[pytest]\nmarkers =\n    slow: the whole suite only\n')
    pytester.makeconftest((REPO / "tests/conftest.py").read_text())
    stand_in = pytester.path / "bin" / "snakemake"  # answers at once: the guard looks at the command, not its cost
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    pytester.makepyfile(test_tiers=textwrap.dedent(f"""\
        import subprocess
        import sys

        import pytest


        def test_unmarked():
            subprocess.run(["{stand_in}", "--version"])


        @pytest.mark.slow
        def test_marked():
            assert subprocess.run(["{stand_in}", "--version"]).returncode == 0


        def test_other_commands():
            assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_unmarked*", "*starts Snakemake*mark it @pytest.mark.slow*"])
