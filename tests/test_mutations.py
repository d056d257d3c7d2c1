"""The deliberate bugs of tests/mutations.py, each caught by the tests named beside it (run on a mutated copy)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from mutations import MUTATIONS, caught


@pytest.fixture(scope="module")
def outcomes():
    """Every mutation's (caught, pytest's last lines), two at a time: each runs its own pytest process, and CI's two
    cores would otherwise take turns idling through their start-up."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(MUTATIONS, pool.map(caught, MUTATIONS), strict=True))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[mutation.name for mutation in MUTATIONS])
def test_the_suite_catches_a_deliberate_bug(mutation, outcomes):
    found, tail = outcomes[mutation]
    assert found, f"{mutation.name} survived {', '.join(mutation.tests)}:\n{tail}"
