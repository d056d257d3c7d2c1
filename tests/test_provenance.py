"""Provenance: every result says what produced it, result tables stay identical whatever the host, and a grid that
mixes code, library versions or data is flagged, naming the run."""

import copy
import hashlib
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from wdrank import __version__, provenance
from wdrank.aggregate import read_run_provenance, write_run_table
from wdrank.provenance import FLAT_COLUMNS, LIBRARIES, record


def test_a_record_names_code_libraries_machine_and_input_digests(tmp_path):
    data = tmp_path / "data"
    (data / "tokens").mkdir(parents=True)
    (data / "tokens" / "train.bin").write_bytes(b"\x01\x02" * 1000)
    (data / "manifest.json").write_text("{}")
    made = record([data])
    assert made["code"]["wdrank"] == __version__
    assert made["libraries"]["torch"] == str(torch.__version__)  # the torch that runs, as installed
    assert set(LIBRARIES) <= set(made["libraries"]) and made["libraries"]["python"].count(".") == 2
    assert made["machine"]["cpu"]
    assert made["inputs"] == {"data/manifest.json": hashlib.sha256(b"{}").hexdigest(),
                              "data/tokens/train.bin": hashlib.sha256(b"\x01\x02" * 1000).hexdigest()}
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        record([tmp_path / "missing.bin"])


def test_the_commit_of_a_checkout_and_its_edits(tmp_path):
    """Run from a git checkout: its commit, and a dirty flag and digest that change with the edits."""
    package = tmp_path / "repo" / "src"
    package.mkdir(parents=True)
    (package / "module.py").write_text("x = 1\n")
    git = ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert provenance.git_state(package) == {"commit": head, "dirty": False, "diff": ""}
    (package / "module.py").write_text("x = 2\n")
    first = provenance.git_state(package)
    (package / "module.py").write_text("x = 3\n")
    second = provenance.git_state(package)
    assert first["dirty"] and second["dirty"] and first["diff"] != second["diff"]
    (package / "module.py").write_text("x = 1\n")
    (package / "new.py").write_text("y = 1\n")  # a new module changes what runs, too
    assert provenance.git_state(package)["dirty"]
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None, "diff": None}  # not a checkout
    installed = tmp_path / "repo" / ".venv" / "wdrank"  # a package installed inside someone else's checkout
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert provenance.git_state(installed) == {"commit": None, "dirty": None, "diff": None}


def write_grid(folder, torch_of=lambda seed: "2.14.1", cpu_of=lambda seed: "AMD EPYC"):
    """Three runs of a grid (summary.json and spectra.parquet each), their provenance varied per seed."""
    base = record()
    summaries, spectra = [], []
    for seed in range(3):
        made = copy.deepcopy(base)
        made["libraries"]["torch"] = torch_of(seed)
        made["machine"]["cpu"] = cpu_of(seed)
        summary = {"row": {"wd_attn": 0.1, "seed": seed, "test_loss": 1.0 + seed / 3},
                   "run": {"experiment": "toy_transformer", "sweep": {"wd_attn": 0.1, "seed": seed}},
                   "session": {"train_seconds": 1.0 + seed, "threads": 1, "device": "1 x cpu"},
                   "provenance": made}
        path = folder / f"seed~{seed}" / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(summary))
        table = pd.DataFrame({"wd_attn": [0.1], "seed": [seed], "rank": [3]})
        write_run_table(table, path.parent / "spectra.parquet", {"summary": str(path)})
        summaries.append(path)
        spectra.append(path.parent / "spectra.parquet")
    return summaries, spectra


def collect(summaries, spectra, out):
    out.mkdir()
    command = [sys.executable, "-m", "wdrank", "collect-runs", "--summaries", *map(str, summaries),
               "--spectra", *map(str, spectra), "--runs-out", str(out / "runs.csv"),
               "--spectra-out", str(out / "spectra.csv"), "--provenance-out", str(out / "provenance.csv")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def test_result_tables_are_identical_whatever_produced_the_runs(tmp_path):
    """Same results from other machines and library versions: the runs and spectra tables are the same bytes; only
    the provenance table tells the runs apart."""
    here = collect(*write_grid(tmp_path / "here"), tmp_path / "out_here")
    there = collect(*write_grid(tmp_path / "there", torch_of=lambda seed: "2.9.1", cpu_of=lambda seed: "Intel Xeon"),
                    tmp_path / "out_there")
    for name in ("runs.csv", "spectra.csv"):
        assert (tmp_path / "out_here" / name).read_bytes() == (tmp_path / "out_there" / name).read_bytes(), name
    assert (tmp_path / "out_here/provenance.csv").read_bytes() != (tmp_path / "out_there/provenance.csv").read_bytes()
    assert "WARNING" not in here.stderr + there.stderr  # each grid agrees with itself


def test_a_grid_with_one_run_of_another_torch_is_flagged_naming_the_run(tmp_path):
    summaries, spectra = write_grid(tmp_path / "grid", torch_of=lambda seed: "2.13.0" if seed == 1 else "2.14.1",
                                    cpu_of=lambda seed: f"CPU {seed}")
    result = collect(summaries, spectra, tmp_path / "out")
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stderr
    assert "wd_attn=0.1, seed=1" in warnings[0] and "torch 2.13.0" in warnings[0]
    table = provenance.read_table(tmp_path / "out/provenance.csv")
    assert list(table.columns) == ["wd_attn", "seed", *FLAT_COLUMNS, "differs"]
    assert table["differs"].tolist() == ["", "torch", ""]  # the CPU differs too, but machines may (documented)

    combined = tmp_path / "all.csv"
    done = subprocess.run([sys.executable, "-m", "wdrank", "provenance", str(tmp_path / "out/provenance.csv"),
                           "--names", "toy_runs", "--out", str(combined)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "table=toy_runs, wd_attn=0.1, seed=1" in done.stderr
    assert provenance.read_table(combined)["table"].tolist() == ["toy_runs"] * 3


def test_a_summary_without_provenance_is_refused_naming_the_file(tmp_path):
    summaries, spectra = write_grid(tmp_path / "grid")
    old = json.loads(summaries[0].read_text())
    del old["provenance"]
    summaries[0].write_text(json.dumps(old))
    command = [sys.executable, "-m", "wdrank", "collect-runs", "--summaries", *map(str, summaries), "--spectra",
               *map(str, spectra), "--runs-out", str(tmp_path / "r.csv"), "--spectra-out", str(tmp_path / "s.csv"),
               "--provenance-out", str(tmp_path / "p.csv")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0 and str(summaries[0]) in result.stderr and "provenance" in result.stderr


@pytest.mark.slow
def test_every_result_of_the_tiny_run_says_what_produced_it(tiny_run):
    lm = json.loads(next(tiny_run.glob("results/lm/runs/**/summary.json")).read_text())["provenance"]
    assert lm["code"]["wdrank"] == __version__ and lm["libraries"]["torch"] == str(torch.__version__)
    data = tiny_run / "resources/lm/data"
    assert lm["inputs"] and all(name.startswith("data/") for name in lm["inputs"])
    assert {name.removeprefix("data/") for name in lm["inputs"]} == {
        path.relative_to(data).as_posix() for path in data.rglob("*") if path.is_file()}  # every file of the data
    token_file = next(name for name in lm["inputs"] if name.endswith(".bin"))
    assert lm["inputs"][token_file] == hashlib.sha256((data / token_file.removeprefix("data/")).read_bytes()).hexdigest()
    vit = json.loads(next(tiny_run.glob("results/vit/runs/**/summary.json")).read_text())["provenance"]
    assert any(name.endswith("_images.bin") for name in vit["inputs"])
    lora = json.loads(next(tiny_run.glob("results/lora/runs/**/summary.json")).read_text())["provenance"]
    base = tiny_run / "results/lm/checkpoints/wd_attn~0.0/wd_mlp~0.1/seed~0/step_000030"  # the run fine-tuned
    assert lora["inputs"]["step_000030/model.safetensors"] == hashlib.sha256(
        (base / "model.safetensors").read_bytes()).hexdigest() and lora["libraries"]["peft"]
    factorized = read_run_provenance(next(tiny_run.glob("results/factorized/runs/**/*.parquet")))
    assert factorized["code"]["wdrank"] == __version__ and factorized["inputs"] == {}

    tables = tiny_run / "results/tables"
    audit = provenance.read_table(tables / "audit_all-MiniLM-L6-v2_provenance.csv")
    assert audit["model"].tolist() == ["all-MiniLM-L6-v2"] and len(audit["inputs"][0]) == 16
    combined = provenance.read_table(tables / "provenance.csv")
    assert set(combined["table"]) == {"fig1_factorized_matrices", "lm_runs", "vit_runs", "toy_runs", "lora_runs",
                                      "figA_scalar_pair_trajectories", "audit_all-MiniLM-L6-v2"}
    assert (combined["differs"] == "").all() and (combined["torch"] == str(torch.__version__)).all()
