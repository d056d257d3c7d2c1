"""Fig. 2: a 2-layer attention-only Transformer on in-context linear regression, trained fully online.

Each step draws fresh tasks: w ~ N(0, I_d), x_i ~ N(0, I_d), y_i = wᵀx_i, a context of N pairs and one query.
The model predicts y_q; the loss is the mean squared error. With weight decay λ on the attention weights the
paper predicts (Sec. 3, Fig. 2): the balance ‖W_VᵀW_V − W_O W_Oᵀ‖ (and likewise for W_Q, W_K) decays like
e^{−2ηλt}, after which L2 acts as a nuclear norm on W_V W_O and W_Q W_Kᵀ, whose ranks fall as λ grows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from wdrank.experiments.training import Throughput, TrainingSetup
from wdrank.models.toy import ToyShape, build_toy
from wdrank.optim import WeightDecays, build_optimizer
from wdrank.recording import recorded_steps
from wdrank.schedule import Schedule

SECTION = "toy_transformer"  # its config section


@dataclass(frozen=True)
class ToyTraining:
    """Settings of one toy run (config section `toy_transformer.train`)."""

    steps: int
    batch_size: int
    context: int  # N context pairs per sequence
    lr: float
    optimizer: str  # adamw | adam_l2 | sgd
    wd_other: float
    record_points: int  # checkpoints (and spectra) at about 2x this many log- and linearly spaced steps
    eval_size: int


class InContextRegression:
    """Fresh regression tasks every step (fully online); batch `step` is a pure function of (seed, step)."""

    def __init__(self, x_dim: int, context: int, batch_size: int, seed: int, eval_size: int):
        self.x_dim, self.context, self.batch_size, self.seed = x_dim, context, batch_size, seed
        self.eval_batch = self._sample(np.random.default_rng((seed, 2**31)), eval_size)  # held-out tasks

    def _sample(self, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = rng.standard_normal((size, self.x_dim, 1))
        x = rng.standard_normal((size, self.context + 1, self.x_dim))
        y = (x @ w)[..., 0]  # (B, N+1)
        tokens = np.concatenate([x, y[..., None]], axis=-1)  # (B, N+1, d+1)
        tokens[:, -1, -1] = 0.0  # the query's y is what is predicted
        return torch.from_numpy(tokens).float(), torch.from_numpy(y[:, -1]).float()

    def batch(self, step: int, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, targets = self._sample(np.random.default_rng((self.seed, step)), self.batch_size)
        return tokens[rows], targets[rows]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        tokens, targets = batch
        return (model(tokens) - targets).square().mean()

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"eval_loss": self.loss(model, self.eval_batch).item()}


def setup(settings: dict, data_dir: None, decays: WeightDecays, seed: int) -> TrainingSetup:
    """One run: fresh tasks every step, constant learning rate and no clipping (so the e^{−2ηλt} reference of the
    balance applies), checkpoints at log- and linearly spaced steps; no data folder."""
    shape, training = ToyShape(**settings["model"]), ToyTraining(**settings["train"])
    model = build_toy(shape, seed)
    schedule = Schedule(steps=training.steps, batch_size=training.batch_size, warmup_steps=0, min_lr_ratio=1.0, grad_clip=None,
                        eval_every=max(1, training.steps // 20),
                        checkpoint_steps=tuple(recorded_steps(training.steps, training.record_points).tolist()))
    return TrainingSetup(
        model=model, optimizer=build_optimizer(model, decays, lr=training.lr, algorithm=training.optimizer),
        task=InContextRegression(shape.x_dim, training.context, training.batch_size, seed, training.eval_size),
        schedule=schedule, throughput=Throughput("tasks", training.batch_size),
        score=lambda trained, evaluation: evaluation, model_shape=asdict(shape), model_config=shape.config(),
    )
