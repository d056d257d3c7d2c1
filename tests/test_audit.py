"""Pretrained-model audit: timm files and folders, the GGUF reader, lazy/sharded loading, which files are read,
pickle safety, hub ids offline, trajectories along training, one-line errors for every bad input, and agreement with
dense SVD on the packaged MiniLM."""

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from wdrank import spectra
from wdrank.audit import audit_model
from wdrank.cli import main
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


def tiny_gguf(tmp_path):
    """`llama_state()` written as llama.cpp's converter writes it (Q/K rows permuted) to tiny.gguf."""
    import gguf

    from wdrank.weights import GGUFLlama

    state, _ = llama_state()
    writer = gguf.GGUFWriter(str(tmp_path / "tiny.gguf"), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    for key, weight in state.items():
        parts = key.split(".")
        if parts[4] == "q_proj":
            weight = llama_cpp_permute(weight, 4)
        elif parts[4] == "k_proj":
            weight = llama_cpp_permute(weight, 2)
        writer.add_tensor(f"blk.{parts[2]}.{GGUFLlama.NAMES[parts[4]]}.weight", weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tmp_path / "tiny.gguf"


def test_gguf_llama_round_trip_undoes_the_rope_permutation(tmp_path):
    state, config = llama_state()
    tiny_gguf(tmp_path)
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


def test_plain_pickles_are_read_and_arbitrary_objects_refused(tmp_path):
    torch.save({"blocks.0.attn.qkv.weight": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        open_weights(tmp_path / "evil.pth")
    generator = torch.Generator().manual_seed(0)
    plain = {"blocks.0.attn.qkv.weight": torch.randn(192, 64, generator=generator),
             "blocks.0.attn.proj.weight": torch.randn(64, 64, generator=generator)}
    torch.save(plain, tmp_path / "plain.pth")
    assert len(audit_model(tmp_path / "plain.pth", (0.01,))) == 2  # one head of 64: QK and OV


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


# ----- what is read, and how -----

def tiny_gpt2(folder, seed=0):
    """`tiny_gpt2_in_memory(seed)`, saved to `folder`."""
    model = tiny_gpt2_in_memory(seed)
    model.save_pretrained(folder)
    return model


class CountingState(dict):
    """A state dict that counts how often each tensor is read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.reads = {}

    def __getitem__(self, key):
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().__getitem__(key)


def test_each_tensor_is_read_once_and_only_attention_is_read():
    model = tiny_gpt2_in_memory()
    state = CountingState(model.state_dict())
    audit_model(state, config=model.config)
    assert set(state.reads) == {f"transformer.h.{layer}.attn.{name}.weight" for layer in range(2)
                                for name in ("c_attn", "c_proj")}
    assert set(state.reads.values()) == {1}


def tiny_gpt2_in_memory(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=16,
                                      bos_token_id=0, eos_token_id=0))


@pytest.mark.parametrize("dtype, stored", [(torch.bfloat16, "BF16"), (torch.float16, "F16")])
def test_half_precision_safetensors_audit_exactly_like_their_values_in_float64(tmp_path, dtype, stored):
    """A model saved in bfloat16 or float16 (as most hub checkpoints are): read from the file, widened exactly."""
    model = tiny_gpt2_in_memory().to(dtype)
    model.save_pretrained(tmp_path / "half")
    header = json.loads((tmp_path / "half/model.safetensors").read_bytes()[8:][:int.from_bytes(
        (tmp_path / "half/model.safetensors").read_bytes()[:8], "little")])
    assert header["transformer.h.0.attn.c_attn.weight"]["dtype"] == stored
    table = audit_model(tmp_path / "half")
    exact = audit_model({name: value.double() for name, value in model.state_dict().items()}, config=model.config)
    for column in ("nuclear_norm", "frobenius_side", "balance_discrepancy"):
        np.testing.assert_allclose(table[column], exact[column], rtol=1e-12, err_msg=column)


def test_only_weight_files_are_read_and_old_pickles_load(tmp_path):
    """A Trainer folder: pytorch_model.bin beside training_args.bin (an arbitrary pickle, refused if it were read);
    a legacy (pre-zip) pickle loads with weights_only=True, without mmap."""
    model = tiny_gpt2_in_memory()
    folder = tmp_path / "checkpoint-500"
    folder.mkdir()
    (folder / "config.json").write_text(model.config.to_json_string())
    torch.save(model.state_dict(), folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    torch.save({"args": NotATensor()}, folder / "training_args.bin")
    torch.save({"state": NotATensor()}, folder / "optimizer.pt")
    model.save_pretrained(tmp_path / "safetensors")
    np.testing.assert_allclose(audit_model(folder)["nuclear_norm"], audit_model(tmp_path / "safetensors")["nuclear_norm"],
                               rtol=1e-12)


def test_timm_folder_takes_its_heads_from_timm(tmp_path):
    import timm
    from timm.models._hub import save_for_hf

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, num_classes=3)
    save_for_hf(model, str(tmp_path / "vit"), safe_serialization=True)
    config = json.loads((tmp_path / "vit" / "config.json").read_text())
    assert "model_type" not in config and config["architecture"] == "vit_tiny_patch16_224"
    table = audit_model(tmp_path / "vit")
    assert len(table) == 2 * 3 * 2 and set(table["head_dim"]) == {64}  # ViT-Ti: 3 heads of 64


# ----- hub ids, offline, from a locally built cache -----

def hub_cache(root, revisions):
    """A Hugging Face cache holding org/tiny at the given {revision: folder}: refs point at snapshot folders."""
    repo = root / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    for index, (revision, folder) in enumerate(revisions.items()):
        commit = f"{index:040x}"
        shutil.copytree(folder, repo / "snapshots" / commit)
        (repo / "refs" / revision).write_text(commit)
    return root


def test_hub_ids_and_revisions_are_read_offline_from_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for seed, name in enumerate(("main", "step100", "step200")):
        tiny_gpt2(tmp_path / name, seed)
    cache = hub_cache(tmp_path / "hub", {name: tmp_path / name for name in ("main", "step100", "step200")})
    np.testing.assert_allclose(audit_model("org/tiny", hub_cache=cache)["nuclear_norm"],
                               audit_model(tmp_path / "main")["nuclear_norm"], rtol=1e-12)
    np.testing.assert_allclose(audit_model("org/tiny@step200", hub_cache=cache)["nuclear_norm"],
                               audit_model(tmp_path / "step200")["nuclear_norm"], rtol=1e-12)

    assert main(["audit", "org/tiny", "--revisions", "step200", "step100", "--hub-cache", str(cache), "--quiet",
                 "--table", str(tmp_path / "trajectory.csv")]) == 0
    table = pd.read_csv(tmp_path / "trajectory.csv")
    assert set(table["model"]) == {"org/tiny"}
    assert list(table.drop_duplicates("step")[["checkpoint", "step"]].itertuples(index=False, name=None)) == [
        ("org/tiny@step100", 100), ("org/tiny@step200", 200)]  # in training order
    snapshot = next((cache / "models--org--tiny" / "snapshots").iterdir())
    assert main(["audit", str(snapshot), "--quiet", "--table", str(tmp_path / "one.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "one.csv")["model"]) == {"org/tiny"}  # the repo id, not the commit hash
    capsys.readouterr()
    assert "not in the hub cache" in cli_error(capsys, "org/other", "--hub-cache", str(cache))


# ----- along training -----

def test_a_folder_of_checkpoints_gives_a_trajectory_table_and_figure(tmp_path, capsys):
    for step in (0, 100, 1000):
        tiny_gpt2(tmp_path / "run" / f"step_{step:06d}", seed=step)
    (tmp_path / "run" / "notes").mkdir()  # not a checkpoint: no config.json
    outputs = {key: tmp_path / f"trajectory.{key}" for key in ("csv", "pdf", "png")}
    assert main(["audit", str(tmp_path / "run"), "--checkpoints", "--quiet", "--table", str(outputs["csv"]),
                 "--pdf", str(outputs["pdf"]), "--png", str(outputs["png"])]) == 0
    table = pd.read_csv(outputs["csv"])
    assert sorted(table["step"].unique()) == [0, 100, 1000] and set(table["model"]) == {"run"}
    assert len(table) == 3 * 2 * 4 * 2  # checkpoints x layers x heads x products
    assert outputs["png"].stat().st_size > 20_000
    assert "step 1000 (step_001000)" in capsys.readouterr().out


# ----- every bad input: exit status 1, one line naming the file and the fault -----

def cli_error(capsys, *argv):
    capsys.readouterr()  # what building the inputs printed
    with warnings.catch_warnings(record=True) as printed:  # outside pytest, each would be more lines on stderr
        warnings.simplefilter("always")
        assert main(["audit", *argv, "--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wdrank audit: error: "), lines
    assert not printed, [str(warning.message) for warning in printed]
    return lines[0]


def gpt2_folder(tmp_path):
    tiny_gpt2(tmp_path / "gpt2")
    return tmp_path / "gpt2"


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))


def timm_file(tmp_path, d=192):
    from safetensors.numpy import save_file

    save_file({"blocks.0.attn.qkv.weight": np.zeros((3 * d, d), np.float32),
               "blocks.0.attn.proj.weight": np.zeros((d, d), np.float32)}, tmp_path / "vit.safetensors")
    return tmp_path / "vit.safetensors"


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def llama_folder_with_gpt2_weights(tmp_path):
    folder = gpt2_folder(tmp_path)
    from transformers import LlamaConfig

    (folder / "config.json").write_text(LlamaConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                                                    intermediate_size=40, vocab_size=64).to_json_string())
    return [str(folder)]


BAD_INPUTS = {
    "truncated safetensors": (lambda t: [str(truncated(gpt2_folder(t) / "model.safetensors").parent)],
                              "model.safetensors: not a valid safetensors file"),
    "config without a head count": (lambda t: [str(edit_config_and_return(gpt2_folder(t), n_head=None))],
                                    "the config has no head count (n_head)"),
    "llama config, gpt2 weights": (llama_folder_with_gpt2_weights, "(they look like gpt2)"),
    "text file named .gguf": (lambda t: [str(write(t / "model.gguf", b"not a model\n"))],
                              "model.gguf: not a readable GGUF file"),
    "truncated gguf": (lambda t: [str(truncated(tiny_gguf(t)))], "tiny.gguf: not a readable GGUF file"),
    "malformed JSON": (lambda t: [str(write(gpt2_folder(t) / "config.json", b"{'n_head': 4").parent)],
                       "config.json: malformed JSON"),
    "--n-head 5 on d 192": (lambda t: [str(timm_file(t)), "--n-head", "5"], "5 heads do not divide d_model 192"),
    "--n-head 0": (lambda t: [str(timm_file(t)), "--n-head", "0"], "--n-head must be a positive number"),
    "--threads 0": (lambda t: [str(gpt2_folder(t)), "--threads", "0"], "--threads must be a positive number"),
    "config without model_type": (lambda t: [str(edit_config_and_return(gpt2_folder(t), model_type=None))],
                                  "config.json: has no model_type"),
    "unsupported architecture": (lambda t: [str(edit_config_and_return(gpt2_folder(t), model_type="t5"))],
                                 "architecture 't5' is not supported; supported: gpt2, llama"),
    "no such path": (lambda t: [str(t / "missing")], "no model at"),
    "folder without weights": (lambda t: [str(trainer_folder_without_weights(t))],
                               "no weights found (model*.safetensors or pytorch_model*.bin"),
    "index names a missing shard": (lambda t: [str(index_with_missing_shard(t))],
                                    "model.safetensors.index.json: names 'model-00002-of-00002.safetensors'"),
    "unknown format": (lambda t: [str(write(t / "model.onnx", b"onnx"))], "model.onnx: unknown model format"),
    "pickle with arbitrary objects": (lambda t: [str(evil_pickle(t))], "weights_only=True"),
}


def edit_config_and_return(folder, **changes):
    edit_config(folder, **changes)
    return folder


def write(path, data):
    path.write_bytes(data)
    return path


def trainer_folder_without_weights(tmp_path):
    folder = gpt2_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    torch.save({"args": 1}, folder / "training_args.bin")
    return folder


def index_with_missing_shard(tmp_path):
    folder = gpt2_folder(tmp_path)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    return folder


def evil_pickle(tmp_path):
    torch.save({"blocks.0.attn.qkv.weight": NotATensor()}, tmp_path / "evil.pth")
    return tmp_path / "evil.pth"


def raw_safetensors(path, header, data=b""):
    """A .safetensors file with exactly this header (any JSON) and data section, as a faulty writer leaves it."""
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    return path


def gpt2_with_header(tmp_path, edit):
    """The tiny GPT-2 folder (2 layers) with its safetensors header changed by `edit(header)`, data kept."""
    file = gpt2_folder(tmp_path) / "model.safetensors"
    raw = file.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    edit(header)
    raw_safetensors(file, header, raw[8 + length:])
    return [str(file.parent)]


C_ATTN = "transformer.h.{}.attn.c_attn.weight"


def set_entry(header, layer, **changes):
    header[C_ATTN.format(layer)].update(changes)


def shift_end(header, layer, by):
    begin, end = header[C_ATTN.format(layer)]["data_offsets"]
    set_entry(header, layer, data_offsets=[begin, end + by])


def flatten(header):
    rows, cols = header[C_ATTN.format(0)]["shape"]
    set_entry(header, 0, shape=[rows * cols])


def index_naming(tmp_path, shard):
    """A GPT-2 folder whose weights are only reachable through an index naming `shard` (beside: ../other)."""
    folder = gpt2_folder(tmp_path)
    (tmp_path / "other").mkdir()
    (folder / "model.safetensors").rename(tmp_path / "other" / "model.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {C_ATTN.format(0): shard}}))
    return [str(folder)]


def llama_folder(tmp_path, **config_changes):
    from safetensors.numpy import save_file

    state, config = llama_state()
    (tmp_path / "llama").mkdir()
    save_file(state, tmp_path / "llama" / "model.safetensors")
    (tmp_path / "llama" / "config.json").write_text(json.dumps({**config, **config_changes}))
    return [str(tmp_path / "llama")]


def timm_pickle(tmp_path, dtype, poison=None, d=64):
    """A timm ViT checkpoint (.pth) of one layer in `dtype`, with `poison` written into its first weight."""
    qkv = torch.randn(3 * d, d, dtype=torch.float64).to(dtype)
    if poison is not None:
        qkv[0, 0] = poison
    torch.save({"blocks.0.attn.qkv.weight": qkv, "blocks.0.attn.proj.weight": torch.ones(d, d, dtype=dtype)},
               tmp_path / "vit.pth")
    return [str(tmp_path / "vit.pth"), "--n-head", "1"]


def int8_timm_file(tmp_path, d=64):
    from safetensors.numpy import save_file

    save_file({"blocks.0.attn.qkv.weight": np.ones((3 * d, d), np.int8),
               "blocks.0.attn.proj.weight": np.ones((d, d), np.int8)}, tmp_path / "vit.safetensors")
    return [str(tmp_path / "vit.safetensors")]


def symlink_loop(tmp_path):
    folder = gpt2_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(folder / "model.safetensors")
    return [str(folder)]


# Bad model files and configs that were audited silently or stopped with a traceback; the official safetensors
# library refuses every malformed header here.
BAD_INPUTS.update({
    "negative data_offsets": (lambda t: gpt2_with_header(t, lambda h: set_entry(h, 0, data_offsets=[-8, 0])),
                              "data_offsets [-8, 0] are not [begin, end]"),
    "overlapping tensors": (lambda t: gpt2_with_header(t, lambda h: set_entry(
        h, 1, data_offsets=h[C_ATTN.format(0)]["data_offsets"])), "overlap"),
    "data_offsets disagree with shape x dtype": (lambda t: gpt2_with_header(t, lambda h: set_entry(
        h, 0, shape=[32, 48])), "but shape [32, 48] of F32 needs"),
    "data_offsets shorter than the shape": (lambda t: gpt2_with_header(t, lambda h: shift_end(h, 0, -4)),
                                            "transformer.h.0.attn.c_attn.weight': data_offsets span"),
    "header a JSON list": (lambda t: [str(raw_safetensors(gpt2_folder(t) / "model.safetensors", [1, 2]).parent)],
                           "its header is a JSON list, not an object"),
    "header a JSON string": (lambda t: [str(raw_safetensors(gpt2_folder(t) / "model.safetensors", "w").parent)],
                             "its header is a JSON str, not an object"),
    "index names a file outside the folder": (lambda t: index_naming(t, "../other/model.safetensors"),
                                              "names '../other/model.safetensors', outside the model folder"),
    "index weight_map value a number": (lambda t: index_naming(t, 5), "its weight_map must map tensor names"),
    "config: fewer layers than the weights": (lambda t: [str(edit_config_and_return(gpt2_folder(t), n_layer=1))],
                                              "the config says 1 layers of gpt2, but the weights also hold"),
    "config: num_attention_heads true": (lambda t: [str(edit_config_and_return(gpt2_folder(t), n_head=True))],
                                         "the config's n_head is True, not a positive integer"),
    "config: num_key_value_heads 0": (lambda t: llama_folder(t, num_key_value_heads=0),
                                      "the config's num_key_value_heads is 0, not a positive integer"),
    "config: model_type a list": (lambda t: [str(edit_config_and_return(gpt2_folder(t), model_type=["gpt2"]))],
                                  "architecture ['gpt2'] is not supported"),
    "1-D c_attn": (lambda t: gpt2_with_header(t, flatten), "c_attn.weight has shape (3072,), not that of a 2-D"),
    "int8 (quantised) weights": (int8_timm_file, "is I8: the audit reads floating-point weights"),
    "complex .pth": (lambda t: timm_pickle(t, torch.complex64), "holds torch.complex64 values"),
    ".pth of integers": (lambda t: timm_pickle(t, torch.int64), "holds torch.int64 values"),
    "NaN weights": (lambda t: timm_pickle(t, torch.float32, float("nan")), "blocks.0.attn.qkv.weight (layer 0, QK) "
                    "holds NaN or infinite values"),
    "infinite weights": (lambda t: timm_pickle(t, torch.float32, float("inf")), "qkv.weight (layer 0, QK) holds NaN"),
    "1e200 weights": (lambda t: timm_pickle(t, torch.float64, 1e200), "too large to square in float64"),
    "--n-head for a Hugging Face folder": (lambda t: [str(gpt2_folder(t)), "--n-head", "2"],
                                           "--n-head is for timm checkpoint files"),
    "symlink loop": (symlink_loop, "model.safetensors: cannot be read (Too many levels of symbolic links)"),
    "--table naming a folder": (lambda t: [str(gpt2_folder(t)), "--table", str(t)], "is a folder: give the file"),
})


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_1_with_one_line_naming_the_problem(case, tmp_path, capsys):
    make, expected = BAD_INPUTS[case]
    argv = make(tmp_path)
    table = tmp_path / "table.csv"
    line = cli_error(capsys, *argv, *([] if "--table" in argv else ["--table", str(table)]))
    assert expected in line, line
    assert not table.exists()


@pytest.mark.parametrize("case", ["config without a head count", "llama config, gpt2 weights"])
def test_a_refused_model_prints_its_one_line_before_any_progress_bar(case, tmp_path, capsys):
    argv = BAD_INPUTS[case][0](tmp_path)
    capsys.readouterr()
    assert main(["audit", *argv]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
