"""Per-head factors reproduce the attention each supported architecture actually computes.

For every architecture, a small random model is built from its transformers config (two layers; grouped KV heads,
head_dim ≠ d / heads, fused and interleaved projections where the architecture has them), its attention weights
drawn large and its biases zeroed (the products exclude biases); then its own attention module's output on random
hidden states is compared with Σ_h softmax(scale · x M_QK xᵀ) x M_OV built from our per-head factors alone. Rotary
embeddings are set to the identity (positions play no part in the split) and QK norms to identity maps (the README
says what they mean for W_Q W_Kᵀ). A wrong split errs by O(1); rounding by ~1e-12.
"""

import inspect
import zlib

import numpy as np
import pytest
import torch
import transformers

from wdrank.audit import audit_model, factor_spectra_table
from wdrank.heads import ARCHITECTURES, attention_factors

D, HEADS, KV = 32, 4, 2
COMMON = {"hidden_size": D, "num_attention_heads": HEADS, "num_hidden_layers": 2, "intermediate_size": 40,
          "vocab_size": 50, "max_position_embeddings": 16}

# model type -> (config class name, config arguments, path of layer 1's attention module)
CASES = {
    "gpt2": ("GPT2Config", {"n_embd": D, "n_head": HEADS, "n_layer": 2, "vocab_size": 50, "n_positions": 16},
             lambda m: m.h[1].attn),
    "llama": ("LlamaConfig", {**COMMON, "num_key_value_heads": KV}, lambda m: m.layers[1].self_attn),
    "mistral": ("MistralConfig", {**COMMON, "num_key_value_heads": KV}, lambda m: m.layers[1].self_attn),
    "qwen2": ("Qwen2Config", {**COMMON, "num_key_value_heads": KV}, lambda m: m.layers[1].self_attn),
    "qwen3": ("Qwen3Config", {**COMMON, "num_key_value_heads": KV, "head_dim": 12},
              lambda m: m.layers[1].self_attn),
    "gemma": ("GemmaConfig", {**COMMON, "num_key_value_heads": 1, "head_dim": 16}, lambda m: m.layers[1].self_attn),
    "gemma2": ("Gemma2Config", {**COMMON, "num_key_value_heads": KV, "head_dim": 16, "query_pre_attn_scalar": 16,
                                "attn_logit_softcapping": None}, lambda m: m.layers[1].self_attn),
    "mixtral": ("MixtralConfig", {**COMMON, "num_key_value_heads": KV, "num_local_experts": 2},
                lambda m: m.layers[1].self_attn),
    "gemma3_text": ("Gemma3TextConfig", {**COMMON, "num_key_value_heads": KV, "head_dim": 16,
                                         "query_pre_attn_scalar": 16}, lambda m: m.layers[1].self_attn),
    "olmo": ("OlmoConfig", COMMON, lambda m: m.layers[1].self_attn),
    "olmo2": ("Olmo2Config", {**COMMON, "num_key_value_heads": KV}, lambda m: m.layers[1].self_attn),
    "phi3": ("Phi3Config", {**COMMON, "num_key_value_heads": KV, "pad_token_id": 0},
             lambda m: m.layers[1].self_attn),
    "gpt_neox": ("GPTNeoXConfig", COMMON, lambda m: m.layers[1].attention),
    "falcon-multi-query": ("FalconConfig", {**COMMON, "multi_query": True}, lambda m: m.h[1].self_attention),
    "falcon-per-head": ("FalconConfig", {**COMMON, "multi_query": False}, lambda m: m.h[1].self_attention),
    "falcon-grouped": ("FalconConfig", {**COMMON, "new_decoder_architecture": True, "num_kv_heads": KV},
                       lambda m: m.h[1].self_attention),
    "bert": ("BertConfig", COMMON, lambda m: m.encoder.layer[1].attention),
    "roberta": ("RobertaConfig", COMMON, lambda m: m.encoder.layer[1].attention),
    "xlm-roberta": ("XLMRobertaConfig", COMMON, lambda m: m.encoder.layer[1].attention),
}


def random_model(case):
    class_name, arguments, _ = CASES[case]
    config = getattr(transformers, class_name)(**arguments, attn_implementation="eager")
    model = transformers.AutoModel.from_config(config).double().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            elif parameter.ndim == 2 and "embed" not in name and "wte" not in name and "wpe" not in name:
                parameter.normal_(0, 0.3, generator=torch.Generator().manual_seed(zlib.crc32(name.encode())))
    for module in model.modules():  # QK norms (Qwen3, OLMo 2, Gemma 3) as identity maps
        for norm in ("q_norm", "k_norm"):
            if hasattr(module, norm):
                setattr(module, norm, torch.nn.Identity())
    return model


def own_attention(case, model, x):
    """Layer 1's attention output (after the output projection) as the model computes it."""
    attention = CASES[case][2](model)
    if case in ("bert", "roberta", "xlm-roberta"):  # BertAttention adds the residual and a LayerNorm after dense
        return attention.output.dense(attention.self(x)[0])
    cos_sin = (torch.ones(*x.shape[:2], 64, dtype=x.dtype), torch.zeros(*x.shape[:2], 64, dtype=x.dtype))
    head_dim = getattr(attention, "head_dim", None) or getattr(attention, "head_size", None)
    cos_sin = tuple(t[..., :head_dim] for t in cos_sin)  # identity rotary embedding
    no_mask = torch.zeros(x.shape[0], 1, x.shape[1], x.shape[1], dtype=x.dtype)  # additive: every key visible
    offered = {"hidden_states": x, "attention_mask": no_mask, "position_embeddings": cos_sin, "alibi": None}
    accepted = inspect.signature(attention.forward).parameters
    return attention(**{k: v for k, v in offered.items() if k in accepted})[0]


def scale_of(case, model):
    attention = CASES[case][2](model)
    if case.startswith("falcon"):
        return attention.inv_norm_factor
    if case == "gpt2":
        return (D // HEADS) ** -0.5
    return getattr(attention, "self", attention).scaling  # BERT's scaling sits in its self-attention


def predicted_output(x, factors, scale):
    """Σ_h softmax(scale · x M_QK xᵀ) x M_OV from the factors of one layer alone."""
    qk, ov = (next(f for f in factors if f.product == p) for p in ("QK", "OV"))
    m_qk = torch.from_numpy(qk.a @ qk.b.transpose(0, 2, 1))  # (H, d, d)
    m_ov = torch.from_numpy(ov.a @ ov.b.transpose(0, 2, 1))
    probs = (scale * torch.einsum("btd,hde,bse->bhts", x, m_qk, x)).softmax(-1)
    return torch.einsum("bhts,bsd,hde->bte", probs, x, m_ov)


@pytest.mark.parametrize("case", list(CASES))
def test_factors_reproduce_the_models_own_attention(case):
    model = random_model(case)
    config = model.config.to_dict()
    assert config["model_type"] in ARCHITECTURES
    factors = [f for f in attention_factors(model.state_dict(), config) if f.layer == 1]
    x = torch.randn(2, 6, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = own_attention(case, model, x)
    torch.testing.assert_close(predicted_output(x, factors, scale_of(case, model)), expected, rtol=1e-6, atol=1e-6)


def test_grouped_kv_heads_share_their_factor_and_the_table_has_every_head():
    model = random_model("llama")
    factors = list(attention_factors(model.state_dict(), model.config.to_dict()))
    assert [(f.layer, f.product) for f in factors] == [(0, "QK"), (0, "OV"), (1, "QK"), (1, "OV")]
    assert all(f.a.shape == f.b.shape == (4, D, 8) for f in factors)
    np.testing.assert_array_equal(factors[0].b[0], factors[0].b[1])  # query heads 0 and 1 share KV head 0
    table = factor_spectra_table(iter(factors), (0.01,), threads=2)
    assert len(table) == 2 * 2 * 4 and set(table["product"]) == {"QK", "OV"}
    assert (table["rank_tol_0.01"] <= 8).all() and (table["nuclear_to_frobenius"] <= 1 + 1e-12).all()


def test_in_memory_models_and_state_dicts_audit_like_their_saved_folder(tmp_path):
    import timm

    model = random_model("phi3")
    model.save_pretrained(tmp_path / "phi3")
    saved = audit_model(tmp_path / "phi3")
    for in_memory in (audit_model(model), audit_model(model.state_dict(), config=model.config),
                      audit_model(model.state_dict(), config=model.config.to_dict())):
        np.testing.assert_allclose(in_memory["nuclear_norm"], saved["nuclear_norm"], rtol=1e-12)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, embed_dim=64, num_heads=4,
                            img_size=32, patch_size=8, num_classes=3)
    assert len(audit_model(vit)) == 2 * 4 * 2
    with pytest.raises(ValueError, match="needs its config"):
        audit_model(model.state_dict())


def test_unknown_architecture_lists_supported():
    with pytest.raises(ValueError, match="'t5' is not supported; supported: gpt2, llama, mistral"):
        list(attention_factors({}, {"model_type": "t5"}))
