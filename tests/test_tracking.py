"""Offline tracking: TensorBoard's own reader loads a run's event files with the losses of its metrics.jsonl, every
logged step once, whether the run resumed or was tracked only after it finished; the learning-curves table."""

import json
import shutil
from dataclasses import asdict

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from wdrank.aggregate import collect_learning_curves
from wdrank.checkpoint import list_checkpoints
from wdrank.experiments import toy
from wdrank.experiments.training import run_decays, run_training
from wdrank.models.toy import ToyShape

SHAPE = ToyShape(x_dim=3, n_layer=1, d_model=8, n_head=2, d_head=4)
SETTINGS = {"model": asdict(SHAPE), "train": {"batch_size": 16, "context": 6, "wd_other": 0.0, "steps": 60,
                                              "lr": 0.01, "optimizer": "adamw", "record_points": 4, "eval_size": 32}}


def train(run, tensorboard=None):
    """A toy run of 60 steps (checkpoints at 0, 20, 40, 60) in folder `run`, tracked in `tensorboard` if given."""
    return run_training(toy, SETTINGS, None, run_decays(SETTINGS["train"], 0.3, None), 1,
                        run / "summary.json", run / "metrics.jsonl", run / "ckpt", progress=False,
                        tensorboard_dir=tensorboard)


def logged(run):
    """{key: {step: value}} of a run's metrics.jsonl."""
    curves = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key != "step":
                curves.setdefault(key, {})[record["step"]] = value
    return curves


def events(folder):
    """{tag: [(step, value), ...]} as TensorBoard shows them (orphaned events of a restart purged), and the
    hyperparameters' plugin data."""
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    scalars = {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
               for tag in accumulator.Tags()["scalars"]}
    return scalars, accumulator.PluginTagToContent("hparams")


def assert_same_curves(scalars, curves):
    assert set(scalars) == set(curves) and {"train_loss", "lr", "grad_norm"} < set(curves)
    for tag, by_step in curves.items():
        steps = [step for step, _ in scalars[tag]]
        assert steps == sorted(by_step), (tag, steps)  # every logged step once, in order
        assert [value for _, value in scalars[tag]] == pytest.approx(list(by_step.values()), rel=1e-6), tag


def test_event_files_hold_the_metrics_log_with_the_sweep_point_as_hyperparameters(tmp_path):
    train(tmp_path / "run", tmp_path / "tb")
    scalars, hparams = events(tmp_path / "tb")
    curves = logged(tmp_path / "run")
    assert len(curves["train_loss"]) == 6 and len(curves["eval_loss"]) > 6  # the toy evaluates every few steps
    assert_same_curves(scalars, curves)
    assert hparams, "no hyperparameters: the HParams tab would be empty"
    session = b"".join(hparams.values())
    for text in (b"wd_attn", b"seed", b"train.lr", b"toy_transformer", b"eval_loss"):
        assert text in session, text


def test_a_resumed_run_and_a_run_tracked_after_it_finished_show_every_step_once(tmp_path):
    train(tmp_path / "run", tmp_path / "tb")
    reference = logged(tmp_path / "run")

    # killed after its checkpoint at step 40: the step-60 checkpoint is gone, its events stay on disk
    shutil.rmtree(list_checkpoints(tmp_path / "run" / "ckpt")[-1])
    train(tmp_path / "run", tmp_path / "tb")
    assert logged(tmp_path / "run") == reference
    assert_same_curves(events(tmp_path / "tb")[0], reference)

    # trained without tracking, then rerun with it: resumes at the last step, and the events hold the whole curve
    train(tmp_path / "untracked")
    train(tmp_path / "untracked", tmp_path / "tb_later")
    assert_same_curves(events(tmp_path / "tb_later")[0], logged(tmp_path / "untracked"))


@pytest.mark.slow
def test_with_tracking_on_the_workflow_writes_each_runs_events_beside_its_learning_curve(tiny_run):
    """The tiny grid through the workflow with `tracking: tensorboard` (conftest.TINY): one event folder per run of
    every trained experiment, holding its metrics.jsonl; the learning-curves table and figure as without tracking."""
    for experiment, runs in (("toy", 2), ("lm", 2), ("vit", 2)):
        found = sorted((tiny_run / "results" / experiment / "runs").glob("**/summary.json"))
        assert len(found) == runs, experiment
        for summary in found:
            run = summary.parent
            tracked = tiny_run / "results/tensorboard" / experiment / run.relative_to(tiny_run / "results" /
                                                                                    experiment / "runs")
            scalars, hparams = events(tracked)
            assert_same_curves(scalars, logged(run))
            assert hparams
    table = pd.read_csv(tiny_run / "results/tables/toy_learning_curves.csv")
    assert sorted(table["wd_attn"].unique()) == [0.0, 1.0] and table["train_loss"].notna().sum() == 2 * 6
    assert (tiny_run / "results/figures/learning_curves_toy.png").stat().st_size > 20_000


def test_learning_curves_table_pairs_each_log_with_its_runs_sweep_point(tmp_path):
    for seed_dir in ("a", "b"):
        train(tmp_path / seed_dir)
    table = collect_learning_curves([tmp_path / "a/summary.json", tmp_path / "b/summary.json"],
                                    [tmp_path / "a/metrics.jsonl", tmp_path / "b/metrics.jsonl"])
    curves = logged(tmp_path / "a")
    steps = sorted(set(curves["train_loss"]) | set(curves["eval_loss"]))
    assert list(table.columns[:3]) == ["wd_attn", "seed", "step"]
    assert table["step"].tolist() == steps * 2 and (table["seed"] == 1).all()
    first = table.iloc[: len(steps)].set_index("step")
    assert first["train_loss"].dropna().to_dict() == curves["train_loss"]  # a training and an evaluation record
    assert first["eval_loss"].dropna().to_dict() == curves["eval_loss"]  # of one step share its row
    assert pd.isna(first.loc[3, "train_loss"]) and pd.isna(first.loc[10, "eval_loss"])
    with pytest.raises(ValueError, match="is not the metrics log of the run"):
        collect_learning_curves([tmp_path / "a/summary.json"], [tmp_path / "b/metrics.jsonl"])
