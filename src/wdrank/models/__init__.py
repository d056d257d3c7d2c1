"""Model builders (transformers for language models; timm and toy models arrive with their experiments)."""
