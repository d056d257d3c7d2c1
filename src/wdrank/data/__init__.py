"""Datasets of the experiments: text corpora for language models (images arrive with the ViT experiment)."""
