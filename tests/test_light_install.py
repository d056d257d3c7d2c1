"""The light install (`pip install wdrank`, no `train` extra) redraws every figure and table and audits safetensors
and GGUF models; anything that needs the extra stops with one line naming it. Checked two ways: the commands run
with every training package made unimportable here, and (slow) a new virtual environment with the light install
alone draws the default run's figures from the committed cache (tests/test_workflow.py, `cached_build`), refuses to
train in one line and audits a model."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO
from wdrank.extras import TRAINING_PACKAGES

BLOCKER = textwrap.dedent(f"""
    # Loaded at start-up (sitecustomize): the training packages cannot be imported, as without the train extra.
    import sys

    class _WithoutTrainingExtra:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {TRAINING_PACKAGES!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _WithoutTrainingExtra())
    """)


@pytest.fixture
def without_training_extra(tmp_path):
    """Environment variables under which no training package can be imported (nor by any child process)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO / "src")])}


def tiny_gpt2(folder, seed=0):
    """A 2-layer, 2-head GPT-2 as a Hugging Face folder (config.json + model.safetensors), written without torch."""
    from safetensors.numpy import save_file

    d, generator = 8, np.random.default_rng(seed)
    tensors = {}
    for layer in range(2):
        tensors[f"h.{layer}.attn.c_attn.weight"] = generator.standard_normal((d, 3 * d)).astype(np.float32)
        tensors[f"h.{layer}.attn.c_proj.weight"] = generator.standard_normal((d, d)).astype(np.float32)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": d, "n_head": 2, "n_layer": 2}))
    return folder


def run(command, env, cwd):
    return subprocess.run([sys.executable, "-m", "wdrank", *command], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


CACHE = REPO / "results/cache"
LIGHT_COMMANDS = {  # command, the file it writes (None: it prints)
    "config": (["config"], None),
    "figure": (["figure", "fig1_factorized_matrices", "--table", str(CACHE / "fig1_factorized_matrices.csv.gz"),
                "--trajectory-lambda", "0.4", "--pdf", "fig1.pdf", "--png", "fig1.png"], "fig1.png"),
    "table": (["table", "fig4_audit_summary", "--tables", str(CACHE / "audit_all-MiniLM-L6-v2.csv.gz"),
               "--csv", "summary.csv"], "summary.csv"),
    "audit safetensors": (["audit", "gpt2", "--quiet", "--table", "audit.csv"], "audit.csv"),
    "audit gguf": (["audit", "tiny.gguf", "--quiet", "--table", "audit.csv"], "audit.csv"),
}


@pytest.mark.parametrize("name", list(LIGHT_COMMANDS))
def test_figures_tables_config_and_audits_run_without_the_training_extra(without_training_extra, tmp_path, name):
    from test_audit import tiny_gguf

    tiny_gpt2(tmp_path / "gpt2")
    tiny_gguf(tmp_path)
    command, output = LIGHT_COMMANDS[name]
    result = run(command, without_training_extra, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert output is None or (tmp_path / output).stat().st_size > 0


def test_what_needs_the_training_extra_says_so_in_one_line(without_training_extra, tmp_path):
    (tmp_path / "model.pth").write_bytes(b"PK")
    install = 'pip install "wdrank[train]" (in a checkout: pip install -e ".[train]")'
    train = run(["train", "toy_transformer", "--settings", "{}", "--seed", "0", "--summary", "s.json",
                 "--metrics", "m.jsonl", "--checkpoint-dir", "ckpt"], without_training_extra, tmp_path)
    assert train.returncode == 1 and train.stderr == \
        f"wdrank train: error: this command needs the training extra, not installed here (no torch): {install}\n"
    audit = run(["audit", "model.pth", "--n-head", "2"], without_training_extra, tmp_path)
    assert audit.returncode == 1 and audit.stderr == (
        f"wdrank audit: error: model.pth: reading a .pth/.bin checkpoint needs the training extra, not installed "
        f"here (no torch): {install}; or convert it to safetensors\n")

