"""LoRA adapters (wdrank.lora): adapters written by peft audited against dense SVD of each s·B A, peft's patterns and
rsLoRA honoured, the update agreeing with the merged model, every bad adapter refused in one line; and the AdamW
balance law of a factor pair (wdrank.theory) on a scalar pair."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from wdrank import theory
from wdrank.audit import audit_model
from wdrank.cli import main
from test_audit import cli_error

THRESHOLDS = (0.01, 0.1)


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config)


def tiny_gpt2(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4))


def shape_factors(model):
    """Give every adapted module factors unlike peft's B = 0 start: some low-rank, some unbalanced."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for index, (name, parameter) in enumerate(sorted(model.named_parameters())):
            if "lora_" not in name:
                continue
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                            * (3.0 if index % 3 == 0 else 0.2))
            if "lora_A" in name and index % 4 == 1:  # rank 2 at most
                parameter[2:] = 0


def peft_adapter(folder, base, **lora_config):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(**lora_config))
    shape_factors(model)
    model.save_pretrained(folder)
    return model


def dense_rows(model):
    """module -> (r, scaling, singular values of B A) from the live peft model, by numpy dense SVD."""
    rows = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            a = module.lora_A["default"].weight.detach().double().numpy()
            b = module.lora_B["default"].weight.detach().double().numpy()
            rows[name.removeprefix("base_model.model.")] = (
                module.r["default"], module.scaling["default"], np.linalg.svd(b @ a, compute_uv=False), a, b)
    return rows


@pytest.mark.parametrize("use_rslora", [False, True])
def test_peft_adapter_audit_matches_dense_svd_with_patterns(tmp_path, use_rslora):
    model = peft_adapter(tmp_path / "adapter", tiny_llama(), r=8, lora_alpha=16, use_rslora=use_rslora,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                         rank_pattern={"layers.1.self_attn.v_proj": 4}, alpha_pattern={"o_proj": 32})
    table = audit_model(tmp_path / "adapter", THRESHOLDS)
    expected = dense_rows(model)
    assert sorted(table["module"]) == sorted(expected) and len(table) == 8
    for _, row in table.iterrows():
        r, scaling, sv, a, b = expected[row["module"]]
        module = row["module"]
        assert (row["r"], row["layer"], row["kind"]) == (r, int(module.split(".")[2]), module.rsplit(".", 1)[1])
        assert row["scaling"] == pytest.approx(scaling, rel=1e-12)
        np.testing.assert_allclose(row["nuclear_norm"], sv.sum(), rtol=1e-9)
        np.testing.assert_allclose(row["spectral_norm"], sv[0], rtol=1e-9)
        np.testing.assert_allclose(row["frobenius_side"], 0.5 * ((a ** 2).sum() + (b ** 2).sum()), rtol=1e-9)
        np.testing.assert_allclose(row["balance_discrepancy"], np.linalg.norm(a @ a.T - b.T @ b), rtol=1e-9)
        assert row["rank_tol_0.01"] == (sv > 0.01 * sv[0]).sum()
    v1 = table.set_index("module").loc["model.layers.1.self_attn.v_proj"]
    assert v1["r"] == 4 and v1["scaling"] == pytest.approx(16 / (2.0 if use_rslora else 4.0))
    o0 = table.set_index("module").loc["model.layers.0.self_attn.o_proj"]
    assert o0["scaling"] == pytest.approx(32 / (np.sqrt(8) if use_rslora else 8))
    assert (table["rank_tol_0.01"] <= 2).any() and (table["balance_relative"] > 0.5).any()


def test_conv1d_adapter_update_is_the_merged_weight_change(tmp_path):
    """GPT-2's Conv1D (fan_in_fan_out): s·B A, transposed, is exactly what merging adds to the base weight."""
    base = tiny_gpt2()
    before = {name: p.detach().clone() for name, p in base.named_parameters()}
    model = peft_adapter(tmp_path / "adapter", base, r=4, lora_alpha=8, fan_in_fan_out=True,
                         target_modules=["c_attn"])
    table = audit_model(tmp_path / "adapter", THRESHOLDS).set_index("module")
    merged = model.merge_and_unload()
    for name, parameter in merged.named_parameters():
        module = name.removesuffix(".weight")
        if module in table.index:
            delta = (parameter.detach() - before[name]).double().numpy()
            assert delta.shape == (32, 96)  # Conv1D stores (in, out): the update is (s·B A)ᵀ
            row = table.loc[module]
            assert (row["in_features"], row["out_features"]) == (32, 96)
            np.testing.assert_allclose(row["scaling"] * row["nuclear_norm"],
                                       np.linalg.svd(delta, compute_uv=False).sum(), rtol=1e-5)


def test_bin_adapter_reads_like_safetensors(tmp_path):
    peft_adapter(tmp_path / "st", tiny_llama(), r=4, target_modules=["q_proj"])
    shutil.copytree(tmp_path / "st", tmp_path / "bin")
    from safetensors.torch import load_file

    torch.save(load_file(tmp_path / "st" / "adapter_model.safetensors"), tmp_path / "bin" / "adapter_model.bin")
    (tmp_path / "bin" / "adapter_model.safetensors").unlink()
    np.testing.assert_array_equal(audit_model(tmp_path / "bin", THRESHOLDS).drop(columns=["module"]).to_numpy(),
                                  audit_model(tmp_path / "st", THRESHOLDS).drop(columns=["module"]).to_numpy())


def edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def drop_key(folder, fragment):
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    tensors = load_file(path)
    save_file({k: v for k, v in tensors.items() if fragment not in k}, path)


def add_key(folder, key, tensor):
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    save_file({**load_file(path), key: tensor}, path)


BAD_ADAPTERS = {
    "ia3": (lambda f: edit_config(f, peft_type="IA3"), "a IA3 adapter"),
    "loha": (lambda f: edit_config(f, peft_type="LOHA"), "a LOHA adapter"),
    "dora config": (lambda f: edit_config(f, use_dora=True), "DoRA"),
    "dora weights": (lambda f: add_key(f, "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
                                       torch.ones(48)), "DoRA"),
    "lora bias": (lambda f: edit_config(f, lora_bias=True), "lora_bias"),
    "missing B": (lambda f: drop_key(f, "layers.1.self_attn.q_proj.lora_B"),
                  "module model.layers.1.self_attn.q_proj has lora_A but no lora_B"),
    "shape vs r": (lambda f: edit_config(f, r=6), "module model.layers.0.self_attn.q_proj: lora_A (4, 48)"),
    "no weights": (lambda f: (f / "adapter_model.safetensors").unlink(), "an adapter folder without weights"),
}


@pytest.mark.parametrize("case", sorted(BAD_ADAPTERS))
def test_bad_adapters_are_refused_in_one_line(tmp_path, capsys, case):
    folder = tmp_path / "adapter"
    peft_adapter(folder, tiny_llama(), r=4, target_modules=["q_proj"])
    spoil, expected = BAD_ADAPTERS[case]
    spoil(folder)
    assert expected in cli_error(capsys, str(folder))


def test_adamw_balance_law_of_a_scalar_pair():
    """AdamW's decoupled decay on a pair (a, b) with loss ℓ(ab): |a| − |b| decays as (1 − lr·λ)^t, i.e. e^{−λ·lr·t},
    half the rate of gradient flow's e^{−2λ·lr·t} (theory.adamw_balance), once Adam's second moment has forgotten
    the first steps."""
    a = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    lam, lr = 0.3, 1e-3
    optimizer = torch.optim.AdamW([a, b], lr=lr, weight_decay=lam, betas=(0.9, 0.95), eps=1e-12)
    measured = {}
    for step in range(6001):
        if step % 1500 == 0:
            measured[step] = (a.item() - b.item(), a.item() ** 2 - b.item() ** 2)
        optimizer.zero_grad()
        (0.5 * (a * b - 1.0) ** 2).backward()
        optimizer.step()
    for step in (3000, 4500, 6000):
        difference, squares = measured[step]
        assert difference == pytest.approx(theory.adamw_balance(1.5, lam, lr, step), rel=0.01)
        assert squares / theory.gradient_flow_balance(3.75, lam, lr, step) > 2  # the e^{-2λt} law is far off


def test_cli_audits_an_adapter_into_table_figure_and_summary(tmp_path, capsys):
    peft_adapter(tmp_path / "adapter", tiny_llama(), r=4, target_modules=["q_proj", "v_proj"])
    out = tmp_path / "out"
    assert main(["audit", str(tmp_path / "adapter"), "--quiet", "--table", str(out / "adapter.csv"),
                 "--pdf", str(out / "adapter.pdf"), "--png", str(out / "adapter.png")]) == 0
    printed = capsys.readouterr().out
    assert "q_proj" in printed and "v_proj" in printed and "modules" in printed
    table = pd.read_csv(out / "adapter.csv")
    assert list(table.columns[:4]) == ["model", "module", "layer", "kind"] and len(table) == 4
    assert (out / "adapter.pdf").stat().st_size > 0 and (out / "adapter.png").stat().st_size > 0


@pytest.mark.parametrize("argv, expected", [
    ([], "lora sweeps lora_r: give --set lora_r=VALUE"),
    (["--set", "lora_r=8", "--set", "lora_lr=0.01"], "lora sweeps wd_lora: give --wd-lora"),
    (["--set", "rank=8"], "--set rank=8: lora has no such setting axis (it has: lora_r, lora_lr)"),
])
def test_training_a_lora_run_names_the_missing_sweep_axis(tmp_path, capsys, argv, expected):
    assert main(["train", "lora", "--settings", "{}", "--seed", "0", "--summary", str(tmp_path / "s.json"),
                 "--metrics", str(tmp_path / "m.jsonl"), "--checkpoint-dir", str(tmp_path / "ck"), *argv]) == 1
    assert expected in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
