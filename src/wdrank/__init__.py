"""wdrank: reproduce "Weight decay induces low-rank attention layers" (Kobayashi et al., NeurIPS 2024)."""

__version__ = "0.1.0"
