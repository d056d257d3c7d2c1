"""Pretrained-model audit: head splits of BERT and timm, the GGUF reader, lazy/sharded loading, pickle safety,
and agreement with dense SVD on the packaged MiniLM."""

import json

import numpy as np
import pytest
import torch

from wdrank import spectra
from wdrank.audit import audit_model
from wdrank.tables import audit_summary
from wdrank.config import schema_default
from wdrank.fetch import fetch_package
from wdrank.heads import attention_factors
from wdrank.weights import open_weights

# the packaged MiniLM exactly as the default audit fetches it
MINILM = next(m for m in schema_default("audit", "packaged") if m["name"] == "all-MiniLM-L6-v2")


def zero_biases_and_sharpen(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            elif parameter.ndim == 2:
                parameter.normal_(0, 0.3)
    return model


def factor_attention(x, factors, scale):
    """Σ_h softmax(scale · x M_QK xᵀ) x M_OV from the factors of one layer."""
    qk, ov = (next(f for f in factors if f.product == p) for p in ("QK", "OV"))
    m_qk = torch.from_numpy(qk.a @ qk.b.transpose(0, 2, 1))
    m_ov = torch.from_numpy(ov.a @ ov.b.transpose(0, 2, 1))
    probs = (scale * torch.einsum("btd,hde,bse->bhts", x, m_qk, x)).softmax(-1)
    return torch.einsum("bhts,bsd,hde->bte", probs, x, m_ov)


def test_bert_factors_reproduce_bert_attention():
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=32, attn_implementation="eager")
    model = zero_biases_and_sharpen(BertModel(config).double().eval())
    factors = [f for f in attention_factors(model.state_dict(), config.to_dict()) if f.layer == 1]
    x = torch.randn(2, 5, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    attention = model.encoder.layer[1].attention
    context = attention.self(x)[0]  # (B, T, d), before the output projection
    expected = context @ attention.output.dense.weight.T
    torch.testing.assert_close(factor_attention(x, factors, 6 ** -0.5), expected, rtol=1e-6, atol=1e-6)


def test_timm_vit_factors_reproduce_timm_attention(tmp_path):
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, embed_dim=64, num_heads=4,
                              img_size=32, patch_size=8, num_classes=3)
    model = zero_biases_and_sharpen(model.double().eval())
    attention = model.blocks[1].attn
    attention.fused_attn = False
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "vit.safetensors")
    state, config = open_weights(tmp_path / "vit.safetensors", n_head=4)
    assert config == {"model_type": "timm_vit", "n_head": 4, "n_layer": 2, "d_model": 64}
    factors = [f for f in attention_factors(state, config) if f.layer == 1]
    x = torch.randn(2, 5, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(factor_attention(x, factors, 16 ** -0.5), attention(x))


def llama_state(n_head=4, n_kv=2, d=32, layers=2, seed=0):
    rng = np.random.default_rng(seed)
    r = d // n_head
    state = {}
    for layer in range(layers):
        prefix = f"model.layers.{layer}.self_attn"
        state[f"{prefix}.q_proj.weight"] = rng.standard_normal((n_head * r, d)).astype(np.float32)
        state[f"{prefix}.k_proj.weight"] = rng.standard_normal((n_kv * r, d)).astype(np.float32)
        state[f"{prefix}.v_proj.weight"] = rng.standard_normal((n_kv * r, d)).astype(np.float32)
        state[f"{prefix}.o_proj.weight"] = rng.standard_normal((d, n_head * r)).astype(np.float32)
    config = {"model_type": "llama", "num_attention_heads": n_head, "num_key_value_heads": n_kv,
              "num_hidden_layers": layers, "hidden_size": d}
    return state, config


def llama_cpp_permute(weight, n_head):
    """llama.cpp's convert script: interleave the rotary halves of each head's rows."""
    rows, cols = weight.shape
    return weight.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def test_gguf_llama_round_trip_undoes_the_rope_permutation(tmp_path):
    import gguf

    state, config = llama_state()
    writer = gguf.GGUFWriter(str(tmp_path / "tiny.gguf"), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
    for key, weight in state.items():
        parts = key.split(".")
        if parts[4] == "q_proj":
            weight = llama_cpp_permute(weight, 4)
        elif parts[4] == "k_proj":
            weight = llama_cpp_permute(weight, 2)
        writer.add_tensor(f"blk.{parts[2]}.{names[parts[4]]}.weight", weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    gguf_state, gguf_config = open_weights(tmp_path / "tiny.gguf")
    assert gguf_config["num_key_value_heads"] == 2 and gguf_config["num_hidden_layers"] == 2
    for key, weight in state.items():
        np.testing.assert_array_equal(gguf_state[key], weight)
    ours = list(attention_factors(gguf_state, gguf_config))
    reference = list(attention_factors(state, config))
    for mine, theirs in zip(ours, reference, strict=True):
        np.testing.assert_allclose(mine.a, theirs.a)
        np.testing.assert_allclose(mine.b, theirs.b)


def test_sharded_safetensors_folder_is_read_lazily_and_equals_unsharded(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=16))
    model.save_pretrained(tmp_path / "whole")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    whole, sharded = audit_model(tmp_path / "whole", (0.01,)), audit_model(tmp_path / "sharded", (0.01,))
    assert len(whole) == 2 * 4 * 2
    np.testing.assert_allclose(whole["nuclear_norm"], sharded["nuclear_norm"])


class NotATensor:
    pass


def test_pickles_with_arbitrary_objects_are_refused(tmp_path):
    torch.save({"blocks.0.attn.qkv.weight": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        open_weights(tmp_path / "evil.pth")
    generator = torch.Generator().manual_seed(0)
    plain = {"blocks.0.attn.qkv.weight": torch.randn(192, 64, generator=generator),
             "blocks.0.attn.proj.weight": torch.randn(64, 64, generator=generator)}
    torch.save(plain, tmp_path / "plain.pth")
    assert len(audit_model(tmp_path / "plain.pth", (0.01,))) == 2  # one head of 64: QK and OV


def test_unknown_formats_list_what_is_supported(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown model format"):
        open_weights(tmp_path / "model.onnx")
    folder = tmp_path / "bart"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bart"}))
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(1, dtype=np.float32)}, folder / "model.safetensors")
    with pytest.raises(ValueError, match="supported: gpt2, llama, mistral, bert, timm_vit, toy"):
        audit_model(folder, (0.01,))


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    return fetch_package(MINILM, tmp_path_factory.mktemp("minilm"))


def test_minilm_nuclear_norms_match_dense_svd(minilm):
    """The acceptance check: per-head nuclear norms agree with dense SVD of the formed products to 1e-6."""
    table = audit_model(minilm, (0.01, 0.001))
    assert len(table) == 6 * 12 * 2 and set(table["head_dim"]) == {32}
    state, config = open_weights(minilm)
    dense = [spectra.dense_product_singular_values(f.a, f.b).sum(-1)
             for f in attention_factors(state, config)]  # ordered by layer, product, head like the table
    np.testing.assert_allclose(table["nuclear_norm"], np.concatenate(dense), rtol=1e-6)
    summary = audit_summary(table.assign(model="minilm"), "minilm").set_index("product")
    assert 0.8 < summary.loc["QK", "median_nuclear_to_frobenius"] <= 1.0
