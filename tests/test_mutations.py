"""The deliberate bugs of tests/mutations.py, each caught by the tests named beside it (run on a mutated copy), and
the harness itself, on a small repository of its own: it reports a catch only where a catch is one."""

import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from mutations import MUTATIONS, Mutation, caught, check_unmutated

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def verdicts():
    """Every mutation's verdict, two at a time: each runs its own pytest process, and CI's two cores would otherwise
    take turns idling through their start-up."""
    unmutated = check_unmutated(test for mutation in MUTATIONS for test in mutation.tests)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(MUTATIONS, pool.map(lambda mutation: caught(mutation, unmutated), MUTATIONS), strict=True))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[mutation.name for mutation in MUTATIONS])
def test_the_suite_catches_a_deliberate_bug(mutation, verdicts):
    verdict = verdicts[mutation]
    assert verdict.caught, f"{mutation.name} survived {', '.join(mutation.tests)}:\n{verdict.reason}"


@pytest.fixture(scope="module")
def toy_repository(tmp_path_factory):
    """A package and its tests: one test that checks by assertion, one that fails whatever the code, one that a
    fixture error stops, and one that reads the repository's own file (as a workflow test runs its Snakefile)."""
    repo = tmp_path_factory.mktemp("toy") / "repo"
    (repo / "src/wdrank").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "src/wdrank/__init__.py").write_text("")
    (repo / "src/wdrank/arithmetic.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "rule.txt").write_text("add\n")
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (repo / "tests/test_arithmetic.py").write_text(textwrap.dedent("""\
        from pathlib import Path

        import pytest

        from wdrank.arithmetic import add


        @pytest.fixture
        def positive():
            assert add(1, 1) > 0
            return 1


        def test_add():
            assert add(2, 3) == 5


        def test_add_divides():
            assert 1 / (add(1, 1) - 2 + 1) == 1


        def test_broken():
            assert add(2, 2) == 5


        def test_with_a_fixture(positive):
            assert positive == 1


        def test_the_repositorys_own_rule():
            assert (Path(__file__).parents[1] / "rule.txt").read_text() == "add\\n"
    """))
    tests = ["test_add", "test_add_divides", "test_broken", "test_with_a_fixture", "test_the_repositorys_own_rule"]
    return repo, check_unmutated([f"tests/test_arithmetic.py::{test}" for test in tests], repo)


def verdict(toy, original, mutated, test, path="src/wdrank/arithmetic.py"):
    repo, unmutated = toy
    return caught(Mutation("toy", path, original, mutated, (f"tests/test_arithmetic.py::{test}",)), unmutated, repo)


def test_an_assertion_that_fails_on_the_mutated_copy_is_a_catch(toy_repository):
    assert verdict(toy_repository, "a + b", "a - b", "test_add").caught


def test_a_mutation_of_a_file_outside_the_package_reaches_the_tests_of_the_copy(toy_repository):
    assert verdict(toy_repository, "add\n", "sub\n", "test_the_repositorys_own_rule", path="rule.txt").caught


def test_a_test_that_fails_before_the_mutation_catches_nothing(toy_repository):
    found = verdict(toy_repository, "a + b", "a - b", "test_broken")
    assert not found.caught and "does not pass before the mutation" in found.reason


@pytest.mark.parametrize("original, mutated, test", [
    pytest.param("def add(a, b):", "import not_a_module\ndef add(a, b):", "test_add", id="import error"),
    pytest.param("a + b", "a - b", "test_with_a_fixture", id="fixture error"),
    pytest.param("a + b", "a * b", "test_add_divides", id="division by zero"),
    pytest.param("return a + b", "return a +", "test_add", id="syntax error"),
])
def test_an_error_that_is_no_failed_assertion_catches_nothing(toy_repository, original, mutated, test):
    assert not verdict(toy_repository, original, mutated, test).caught


def test_a_mutation_whose_text_moved_catches_nothing(toy_repository):
    found = verdict(toy_repository, "a - b", "a * b", "test_add")
    assert not found.caught and "not there exactly once" in found.reason
