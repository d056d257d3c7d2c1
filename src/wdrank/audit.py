"""Fig. 4: audit a trained model, head by head — is it where L2 and nuclear-norm regularisation coincide?

For every head and product (QK = W_Q W_Kᵀ, OV = W_V W_O) the Frobenius side ½(‖A‖² + ‖B‖²) is compared with the
nuclear norm ‖A Bᵀ‖_* (ratio 1 when the factors are balanced; the paper finds LLaMA 2, trained with AdamW and weight
decay 0.1, close to 1), together with the relative balance discrepancy and ranks. Never forms a d x d product.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wdrank.heads import attention_factors, factor_spectra_table
from wdrank.weights import open_weights


def audit_model(path: str | Path, rank_thresholds: tuple[float, ...], n_head: int | None = None) -> pd.DataFrame:
    """One row per (layer, head, product) of the model at `path` (see `wdrank.weights.open_weights`); also what
    the spectra of a training run measure on each checkpoint folder."""
    state, config = open_weights(path, n_head)
    return factor_spectra_table(attention_factors(state, config), rank_thresholds)
