"""Per-head factors reproduce the attention the models actually compute (transformers GPT-2 and LLaMA)."""

import numpy as np
import pytest
import torch

from wdrank.heads import attention_factors, factor_spectra_table
from wdrank.models.lm import LMShape, build_lm


def eager_model(architecture, n_kv_head=None):
    model = build_lm(LMShape(architecture, n_layer=2, n_embd=24, n_head=4, context=8, vocab_size=40,
                             n_kv_head=n_kv_head), seed=0).double()
    model.config._attn_implementation = "eager"  # returns the attention probabilities
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):  # the products exclude biases; zero them to compare exactly
                parameter.zero_()
            elif "attn" in name and parameter.ndim == 2:
                parameter.normal_(0, 0.3)  # larger than the default init: a sharper test
    return model


def predicted_attention(x, factors, scale):
    """Attention probabilities softmax(scale · x M_QK xᵀ) and output Σ_h P_h x M_OV from the factors alone."""
    qk = {f.layer: f for f in factors if f.product == "QK"}
    ov = {f.layer: f for f in factors if f.product == "OV"}
    m_qk = torch.from_numpy(qk[0].a @ qk[0].b.transpose(0, 2, 1))  # (H, d, d)
    m_ov = torch.from_numpy(ov[0].a @ ov[0].b.transpose(0, 2, 1))  # (H, d, d)
    scores = scale * torch.einsum("btd,hde,bse->bhts", x, m_qk, x)  # (B, H, T, T)
    probs = scores.softmax(-1)
    output = torch.einsum("bhts,bsd,hde->bte", probs, x, m_ov)  # (B, T, d)
    return probs, output


@pytest.mark.parametrize("architecture, n_kv_head", [("gpt2", None), ("llama", None), ("llama", 2)])
def test_factors_reproduce_model_attention(architecture, n_kv_head):
    model = eager_model(architecture, n_kv_head)
    factors = list(attention_factors(model.state_dict(), model.config.to_dict()))
    x = torch.randn(3, 8, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))  # (B, T, d)
    if architecture == "gpt2":
        attention = model.transformer.h[0].attn
        output, probs = attention(x, attention_mask=None)
    else:
        attention = model.model.layers[0].self_attn
        identity_rope = (torch.ones(3, 8, 6, dtype=torch.float64), torch.zeros(3, 8, 6, dtype=torch.float64))
        output, probs = attention(x, position_embeddings=identity_rope, attention_mask=None)
    expected_probs, expected_output = predicted_attention(x, factors, attention.scaling)
    # GPT-2's eager path rounds through float32 in places (errors ~1e-7); a wrong head split errs by O(1).
    torch.testing.assert_close(probs, expected_probs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(output, expected_output, rtol=1e-6, atol=1e-6)


def test_factor_shapes_and_table():
    model = eager_model("llama", n_kv_head=2)
    factors = list(attention_factors(model.state_dict(), model.config.to_dict()))
    assert [(f.layer, f.product) for f in factors] == [(0, "QK"), (0, "OV"), (1, "QK"), (1, "OV")]
    assert all(f.a.shape == f.b.shape == (4, 24, 6) for f in factors)
    # grouped KV: query heads 0 and 1 share KV head 0
    np.testing.assert_array_equal(factors[0].b[0], factors[0].b[1])
    table = factor_spectra_table(iter(factors), (0.01,))
    assert len(table) == 2 * 2 * 4 and set(table["product"]) == {"QK", "OV"}
    assert (table["rank_tol_0.01"] <= 6).all() and (table["nuclear_to_frobenius"] <= 1 + 1e-12).all()


def test_unknown_architecture_lists_supported():
    with pytest.raises(ValueError, match="'t5' is not supported; supported: gpt2, llama, mistral, bert, timm_vit"):
        attention_factors({}, {"model_type": "t5"})
