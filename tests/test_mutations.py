"""The deliberate bugs of tests/mutations.py, each caught by the tests named beside it (run on a mutated copy)."""

import pytest

from mutations import MUTATIONS, caught


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[mutation.name for mutation in MUTATIONS])
def test_the_suite_catches_a_deliberate_bug(mutation):
    found, tail = caught(mutation)
    assert found, f"{mutation.name} survived {', '.join(mutation.tests)}:\n{tail}"
