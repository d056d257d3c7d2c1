"""The GPU training path, checked on a CPU (CI has no GPU): the compiled language model is one graph, every attention
call is causal SDPA without a mask, the chunked output layer and loss equal the plain ones, and the fused AdamW kernel
is chosen on CUDA only."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from wdrank.data.text import load_tokens
from wdrank.device import Compute
from wdrank.experiments.lm import LMTask
from wdrank.models.lm import LMShape, build_lm
from wdrank.models import next_token
from wdrank.models.next_token import NextTokenLoss, linear_cross_entropy
from wdrank.optim import WeightDecays, build_optimizer, select_kernels
from wdrank.schedule import Schedule
from wdrank.train import train

SHAPES = {"gpt2": LMShape("gpt2", n_layer=2, n_embd=32, n_head=4, context=24, vocab_size=300),
          "llama": LMShape("llama", n_layer=2, n_embd=32, n_head=4, context=24, vocab_size=300, n_kv_head=2)}


def windows(shape: LMShape, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, shape.vocab_size, (batch, shape.context), generator=torch.Generator().manual_seed(seed))


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunked", [False, True], ids=["plain", "chunked"])
@pytest.mark.parametrize("architecture", list(SHAPES))
def test_compiled_language_model_is_one_graph_of_causal_sdpa(architecture, chunked):
    """torch.compile traces model and loss without a graph break, and each layer's attention in that graph is
    `scaled_dot_product_attention(is_causal=True)` with no mask (the causal half of the work, flash-eligible)."""
    shape = SHAPES[architecture]
    torch._dynamo.reset()
    explained = torch._dynamo.explain(NextTokenLoss(build_lm(shape, seed=0), chunked))(windows(shape))
    torch._dynamo.reset()
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    attention = [node for graph in explained.graphs for node in graph.graph.nodes
                 if node.op == "call_function" and node.target is F.scaled_dot_product_attention]
    assert len(attention) == shape.n_layer
    for node in attention:
        assert len(node.args) <= 3 and node.kwargs.get("attn_mask") is None and node.kwargs["is_causal"] is True


class AttentionCalls(TorchFunctionMode):
    """Records (mask, is_causal) of every `F.scaled_dot_product_attention` call while active."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
            self.calls.append((mask, kwargs.get("is_causal", args[5] if len(args) > 5 else False)))
        return func(*args, **kwargs)


@pytest.mark.parametrize("architecture", list(SHAPES))
def test_every_attention_call_of_a_training_step_is_causal_sdpa_without_mask(architecture, tiny_corpus, tmp_path):
    """One step of the pipeline's loop (two micro-batches, then the validation pass): every attention call of every
    layer goes to SDPA with is_causal=True and no explicit mask."""
    shape = SHAPES[architecture]
    model = build_lm(shape, seed=0)
    tokens = {split: load_tokens(tiny_corpus, split) for split in ("train", "validation")}
    task = LMTask(tokens["train"], tokens["validation"], shape.context, batch_size=4, seed=0, eval_batches=1,
                  eval_batch_size=4)
    optimizer = build_optimizer(model, WeightDecays(0.1, 0.1), lr=1e-3)
    with AttentionCalls() as recorded:
        train(model, optimizer, task, Schedule(steps=1, batch_size=4, micro_batch_size=2), tmp_path / "checkpoints",
              tmp_path / "metrics.jsonl", progress=False)
    forwards = 2 + 1  # two micro-batches, one validation batch
    assert len(recorded.calls) == shape.n_layer * forwards
    assert all(mask is None and causal is True for mask, causal in recorded.calls), recorded.calls


@pytest.fixture
def several_chunks(monkeypatch):
    """The chunked route takes 5 rows (of SHAPES' vocabulary) a chunk: several chunks, the last one short."""
    monkeypatch.setattr(next_token, "CHUNK_ELEMENTS", 5 * 300)


def assert_same_loss_and_gradients(model, batch, rtol, bf16=False):
    """The chunked route gives the plain route's loss and gradients to rounding."""

    def context():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    with context():
        plain = NextTokenLoss(model, chunked=False)(batch)
    plain.backward()
    expected = gradients(model)
    model.zero_grad(set_to_none=True)
    with context():
        chunked = NextTokenLoss(model, chunked=True)(batch)
    chunked.backward()
    actual = gradients(model)
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(chunked, plain, rtol=rtol, atol=0)
    assert actual.keys() == expected.keys() and expected
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=rtol, atol=rtol * value.abs().max().item(), msg=name)


@pytest.mark.parametrize("architecture", list(SHAPES))
def test_chunked_loss_equals_plain_loss_and_gradients_in_fp32(architecture, several_chunks):
    model = build_lm(SHAPES[architecture], seed=0)
    assert_same_loss_and_gradients(model, windows(SHAPES[architecture]), rtol=1e-5)


def test_chunked_loss_equals_plain_loss_and_gradients_under_bf16_autocast(several_chunks):
    """The same matmuls in bf16, the softmax in fp32: agreement to bf16 rounding of the gradients."""
    model = build_lm(SHAPES["gpt2"], seed=0)
    assert_same_loss_and_gradients(model, windows(SHAPES["gpt2"]), rtol=2e-2, bf16=True)


def test_chunked_loss_of_a_lora_model_trains_the_adapter_only(several_chunks):
    """Through a peft adapter (frozen base, output weight included): the adapter's gradients agree, the base gets
    none."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build_lm(SHAPES["gpt2"], seed=0),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["attn.c_attn"], fan_in_fan_out=True,
                                      init_lora_weights=False))
    assert_same_loss_and_gradients(model, windows(SHAPES["gpt2"]), rtol=1e-5)
    NextTokenLoss(model, chunked=True)(windows(SHAPES["gpt2"])).backward()
    assert {name for name, p in model.named_parameters() if p.grad is not None} == \
        {name for name, p in model.named_parameters() if "lora_" in name}


def test_chunked_gradients_follow_the_gradient_handed_back(several_chunks):
    """A loss scaled before its backward pass (as gradient accumulation and mixed-precision loss scaling do) scales
    the chunked route's gradients exactly as autograd scales the plain route's."""
    shape = SHAPES["gpt2"]
    model, batch = build_lm(shape, seed=0), windows(shape)
    by_route = []
    for chunked in (False, True):
        (3.0 * NextTokenLoss(model, chunked)(batch)).backward()
        by_route.append(gradients(model))
        model.zero_grad(set_to_none=True)
    plain, chunked = by_route
    assert chunked.keys() == plain.keys() and plain
    for name, value in plain.items():
        torch.testing.assert_close(chunked[name], value, rtol=1e-5, atol=1e-5 * value.abs().max().item(), msg=name)


def test_chunked_loss_without_gradients_is_the_same_number():
    """Evaluation (no_grad) takes the chunked route, to the plain route's value; a chunked loss of random
    logits equals F.cross_entropy's."""
    shape = SHAPES["gpt2"]
    model, batch = build_lm(shape, seed=0), windows(shape)
    with torch.no_grad():
        plain, chunked = NextTokenLoss(model, False)(batch), NextTokenLoss(model, True)(batch)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=0)
    generator = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(7, 4, generator=generator), torch.randn(9, 4, generator=generator)
    targets = torch.arange(7) % 9
    assert linear_cross_entropy(hidden, weight, targets, rows=2).item() == \
        pytest.approx(F.cross_entropy(hidden @ weight.T, targets).item(), rel=1e-6)


@pytest.mark.parametrize("grad_mode", [True, False], ids=["training", "no_grad"])
def test_chunked_loss_computes_gradients_only_in_grad_mode(grad_mode):
    """The matrix products of the chunked route, counted: the logits' (2·N·V·D FLOPs) alone under no_grad
    (evaluation, test perplexity), three times that when training (logits, hidden and weight gradients); and no
    gradient buffer is kept under no_grad. Inputs require gradients either way, as a model's weights do."""
    from torch.utils.flop_counter import FlopCounterMode

    rows, vocab, width = 12, 9, 4
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(rows, width, generator=generator, requires_grad=True)
    weight = torch.randn(vocab, width, generator=generator, requires_grad=True)
    targets = torch.arange(rows) % vocab
    with torch.set_grad_enabled(grad_mode), FlopCounterMode(display=False) as counter:
        loss = linear_cross_entropy(hidden, weight, targets, rows=5)  # three chunks, the last one short
    assert counter.get_total_flops() == (3 if grad_mode else 1) * 2 * rows * vocab * width
    assert loss.requires_grad == grad_mode and (loss.grad_fn is None) != grad_mode


@pytest.mark.parametrize("architecture", list(SHAPES))
def test_test_nll_is_the_same_by_either_route(architecture, several_chunks):
    """Test perplexity's float64 sum, from full logits or chunk by chunk (several chunks), agrees to float64
    rounding of the same fp32 logits."""
    model, batch = build_lm(SHAPES[architecture], seed=0), windows(SHAPES[architecture], batch=4)
    plain = next_token.summed_next_token_nll(model, batch, chunked=False)
    chunked = next_token.summed_next_token_nll(model, batch, chunked=True)
    assert chunked == pytest.approx(plain, rel=1e-6)


def test_the_loop_trains_the_same_model_by_either_route(tiny_corpus, tmp_path, monkeypatch):
    """Ten steps of the pipeline's loop with the chunked route forced on the CPU (as on CUDA) end at the plain
    route's weights and validation loss, to float32 rounding."""
    import wdrank.experiments.lm as lm

    shape = SHAPES["gpt2"]
    tokens = {split: load_tokens(tiny_corpus, split) for split in ("train", "validation")}
    outcomes = {}
    for chunked in (False, True):
        monkeypatch.setattr(lm, "fused_kernels", lambda device, chunked=chunked: chunked)
        model = build_lm(shape, seed=0)
        task = LMTask(tokens["train"], tokens["validation"], shape.context, batch_size=4, seed=0, eval_batches=1,
                      eval_batch_size=4)
        result = train(model, build_optimizer(model, WeightDecays(0.1, 0.1), lr=3e-3), task,
                       Schedule(steps=10, batch_size=4, micro_batch_size=2), tmp_path / f"{chunked}",
                       tmp_path / f"{chunked}.jsonl", progress=False, compute=Compute())
        outcomes[chunked] = result.evaluation["validation_loss"], model.state_dict()
    assert outcomes[True][0] == pytest.approx(outcomes[False][0], rel=1e-5)
    for name, value in outcomes[False][1].items():  # atol: the key bias, whose exact gradient is 0, moves by
        torch.testing.assert_close(outcomes[True][1][name], value, rtol=1e-4, atol=1e-5, msg=name)  # rounding


def test_language_model_route_follows_the_device():
    model = build_lm(SHAPES["gpt2"], seed=0)
    assert LMTask.training_module(model).chunked is False  # CPU: the plain route, bit-identical results


def test_fused_adamw_on_cuda_and_the_plain_kernel_elsewhere():
    """select_kernels picks AdamW's fused kernel for CUDA (moving a resumed step count where it reads it) and leaves
    the default (plain) kernel for the CPU, whatever the optimizer was saved with; other optimizers are left alone."""
    model = build_lm(SHAPES["gpt2"], seed=0)
    optimizer = build_optimizer(model, WeightDecays(0.1, 0.1), lr=1e-3)
    NextTokenLoss(model, chunked=False)(windows(SHAPES["gpt2"])).backward()
    optimizer.step()
    select_kernels(optimizer, torch.device("cuda"))  # only flags and the (CPU) state are touched: no GPU needed
    assert all(group["fused"] is True and group["foreach"] is False for group in optimizer.param_groups)
    steps = [state["step"] for state in optimizer.state.values()]
    assert steps and all(step.dtype == torch.float32 for step in steps)
    saved = optimizer.state_dict()  # as a GPU run checkpoints it
    optimizer.load_state_dict(saved)
    select_kernels(optimizer, torch.device("cpu"))
    assert all(group["fused"] is None and group["foreach"] is None for group in optimizer.param_groups)
    sgd = build_optimizer(model, WeightDecays(0.1, 0.1), lr=1e-3, algorithm="sgd")
    select_kernels(sgd, torch.device("cuda"))
    assert all(group["fused"] is None for group in sgd.param_groups)


def test_a_cpu_run_uses_the_plain_adamw_kernel_even_resuming_a_gpu_checkpoint(tiny_corpus, tmp_path):
    """A run resumed on the CPU from a checkpoint whose optimizer says fused (as a GPU run's does) continues with
    the plain kernel, to the same weights as a run never interrupted."""
    shape = SHAPES["gpt2"]
    tokens = {split: load_tokens(tiny_corpus, split) for split in ("train", "validation")}

    def run(steps: int, folder: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = build_lm(shape, seed=0)
        optimizer = build_optimizer(model, WeightDecays(0.1, 0.1), lr=3e-3)
        task = LMTask(tokens["train"], tokens["validation"], shape.context, batch_size=4, seed=0, eval_batches=1,
                      eval_batch_size=4)
        train(model, optimizer, task, Schedule(steps=steps, batch_size=4, checkpoint_steps=(0, 2, steps)),
              tmp_path / folder, tmp_path / f"{folder}.jsonl", progress=False)
        return model, optimizer

    whole, _ = run(4, "whole")
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "whole" / "step_000002", tmp_path / "resumed" / "step_000002")
    state_file = tmp_path / "resumed" / "step_000002" / "optimizer.pt"
    saved = torch.load(state_file, weights_only=True)
    for group in saved["optimizer"]["param_groups"]:
        group["fused"], group["foreach"] = True, False
    torch.save(saved, state_file)
    resumed, optimizer = run(4, "resumed")
    assert all(group["fused"] is None for group in optimizer.param_groups)
    for name, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_gpu_benchmark_runs_both_loops_side_by_side(monkeypatch, capsys):
    """`benchmarks/gpu_train.py`'s two loops at its smoke scale on the CPU (in this process; the script runs each in
    a process of its own): for each model the reference and the pipeline train, name their attention kernel (the
    CPU's flash SDPA) and trace as one graph; --help says what is compared."""
    spec = importlib.util.spec_from_file_location("gpu_train", Path(__file__).parents[1] / "benchmarks" / "gpu_train.py")
    gpu_train = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_train", gpu_train)  # its dataclasses look their module up there
    spec.loader.exec_module(gpu_train)
    monkeypatch.setattr(sys, "argv", ["gpu_train.py", "--help"])
    with pytest.raises(SystemExit):
        gpu_train.main()
    assert "reference" in capsys.readouterr().out
    for model in ("lm", "vit"):
        micro = gpu_train.SMOKE.micro_batches[model][0]
        for worker in (gpu_train.reference_worker, gpu_train.pipeline_worker):
            row = worker(model, gpu_train.SMOKE, micro, 5, "cpu")
            assert (row["attention_kernel"], row["graphs"]) == ("flash", 1), (model, worker)
            assert row["per_second"] > 0 and row["fused_adamw"] is False and row["mfu"] is None
