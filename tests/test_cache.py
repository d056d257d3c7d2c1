"""Figures from the committed cache: a restore never replaces a result of a real run (wdrank.aggregate)."""

import gzip

from wdrank.aggregate import tables_differing_from_cache


def test_a_restore_would_replace_exactly_the_tables_that_differ_from_the_cache(tmp_path):
    """Of the tables a restore would write: one equal to its cached copy (nothing lost), one a real run made
    differently (named), one not there yet and one whose cached copy is missing (neither replaces anything)."""
    cache, tables = tmp_path / "cache", tmp_path / "tables"
    cache.mkdir()
    tables.mkdir()
    for name in ("same", "real", "absent"):
        (cache / f"{name}.csv.gz").write_bytes(gzip.compress(b"lambda,rank\n0.1,3\n"))
    (tables / "same.csv").write_bytes(b"lambda,rank\n0.1,3\n")
    (tables / "real.csv").write_bytes(b"lambda,rank\n0.1,2\n")
    (tables / "uncached.csv").write_bytes(b"lambda,rank\n0.1,2\n")
    pairs = [(cache / f"{name}.csv.gz", tables / f"{name}.csv") for name in ("same", "real", "absent", "uncached")]
    assert tables_differing_from_cache(pairs) == [str(tables / "real.csv")]
