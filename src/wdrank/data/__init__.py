"""Datasets of the experiments: text corpora and token arrays (`text`), image arrays (`images`)."""
