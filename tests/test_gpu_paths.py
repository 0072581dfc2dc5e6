"""The GPU-facing choices, verified on CPU: fused losses (and their CPU fallback) against the standard loss, the
eager loss outside a compiled graph, gradient checkpointing, DDP/FSDP2 with both, precision/compile/recipe per card
(mocked T4, V100, A100, H100, H200, MPS, CPU), --device auto on a Mac (mocked) and out-of-memory messages."""

from __future__ import annotations

import importlib
import os
import socket
import warnings

import pytest
import torch
import torch.multiprocessing as mp

from babyllama.config import ModelConfig
from babyllama.errors import BabyLlamaError
from babyllama.model import Llama
from babyllama.train import device as dev
from babyllama.train.memory import GuardOutOfMemory, MemorySettings, is_out_of_memory
from babyllama.train.recipes import recipe_for

VOCAB = 101
lce = importlib.import_module("babyllama.ops.linear_cross_entropy")  # the package re-exports a function of that name


def _model(tie: bool = False, dropout: float = 0.0, seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    return Llama(ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=VOCAB, max_seq_len=32,
                             tie_embeddings=tie, dropout=dropout))


def _batch(rows: int = 4, time: int = 16, ignore: bool = True):
    x = torch.randint(0, VOCAB, (rows, time), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    if ignore:
        y[0, :5] = -100
    return x, y


def _loss_and_grads(model: Llama, x, y, forward=None):
    model.zero_grad(set_to_none=True)
    loss = (model if forward is None else forward)(x, y)
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _max_diff(a: dict, b: dict) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in a)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("impl", ["fused", "cce"])
@pytest.mark.parametrize("tie", [False, True])
def test_fused_and_cce_match_the_standard_loss(impl, tie):
    """Without a GPU they fall back to the chunked kernel; loss and every gradient agree with the standard path."""
    x, y = _batch()
    ref_loss, ref = _loss_and_grads(_model(tie), x, y)
    model = _model(tie)
    model.loss_impl = impl
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss, grads = _loss_and_grads(model, x, y)
    assert abs(loss.item() - ref_loss.item()) < 1e-5
    assert _max_diff(grads, ref) < 1e-5


def test_fused_resolution_order(monkeypatch):
    assert lce.resolve_loss_impl("fused", "cpu") == "chunked"
    monkeypatch.setattr(lce, "liger_available", lambda: False)
    monkeypatch.setattr(lce, "cce_available", lambda: True)
    assert lce.resolve_loss_impl("fused", "cuda") == "cce"
    monkeypatch.setattr(lce, "liger_available", lambda: True)
    assert lce.resolve_loss_impl("fused", "cuda") == "liger"
    assert lce.resolve_loss_impl("auto", "cuda") == lce.CUDA_AUTO
    monkeypatch.setattr(lce, "cce_available", lambda: False)
    with pytest.warns(UserWarning, match="cut-cross-entropy"):
        assert lce.resolve_loss_impl("cce", "cuda") == "chunked"


def _eager_kernel(weight, hidden, targets):
    """Stands in for Liger's kernel: plain cross-entropy plus a host sync (.item()), which would break a graph."""
    loss = torch.nn.functional.cross_entropy((hidden @ weight.t()).float(), targets, ignore_index=-100)
    assert loss.item() == loss.item()  # forces a host read, as Liger's kernel does
    return loss


def test_fused_loss_runs_outside_the_compiled_graph(monkeypatch):
    """Compiling the model compiles the body up to the final norm as one graph; the loss runs eagerly after it, so a
    host read inside the kernel does not split the body. Same loss and gradients as the standard path."""
    from torch._dynamo.testing import CompileCounterWithBackend

    monkeypatch.setattr(lce, "resolve_loss_impl", lambda impl, device_type: "liger" if impl == "liger" else impl)
    monkeypatch.setattr(lce, "_liger_loss", lambda: _eager_kernel)
    x, y = _batch()
    ref_loss, ref = _loss_and_grads(_model(), x, y)
    model = _model()
    model.loss_impl = "liger"
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model, backend=counter)
        loss, grads = _loss_and_grads(model, x, y, forward=compiled)
    finally:
        torch._dynamo.reset()
    assert counter.frame_count == 1  # the body; the loss was never traced
    assert abs(loss.item() - ref_loss.item()) < 1e-5 and _max_diff(grads, ref) < 1e-5


# --------------------------------------------------------------------------- gradient checkpointing


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_gradient_checkpointing_gives_identical_gradients(dropout):
    x, y = _batch()
    results = []
    for checkpointing in (False, True):
        model = _model(dropout=dropout)
        model.gradient_checkpointing = checkpointing
        model.train()
        torch.manual_seed(7)  # the same dropout masks; checkpoint replays the RNG state for its recomputation
        results.append(_loss_and_grads(model, x, y))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a.item() == loss_b.item()
    assert _max_diff(grads_a, grads_b) == 0.0
    # Evaluation and decoding never recompute (no autograd graph to save).
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), _model(dropout=dropout).eval()(x))


# --------------------------------------------------------------------------- DDP and FSDP2 (gloo, 2 processes)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _distributed_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as tdist
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, y = _batch(rows=4, ignore=False)  # equal tokens per rank: the mean of rank means is the global mean
        mine = slice(rank * 2, rank * 2 + 2)
        _, reference = _loss_and_grads(_model(), x, y)  # one process, the whole batch, standard loss
        out = {}
        for wrap in ("ddp", "fsdp"):
            for impl, checkpointing in (("fused", False), ("chunked", True), ("standard", True)):
                model = _model()
                model.loss_impl, model.gradient_checkpointing = impl, checkpointing
                if wrap == "ddp":
                    trained = DistributedDataParallel(model)
                else:
                    for block in model.model.layers:
                        fully_shard(block)
                    fully_shard(model)
                    trained = model
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loss = trained(x[mine], y[mine])
                loss.backward()
                grads = {}
                for name, param in model.named_parameters():
                    grad = param.grad
                    grads[name.replace("module.", "")] = grad.full_tensor() if hasattr(grad, "full_tensor") else grad
                out[f"{wrap}/{impl}/checkpointing={checkpointing}"] = _max_diff(grads, reference)
        queue.put((rank, out))
    finally:
        tdist.destroy_process_group()


def test_fused_loss_and_checkpointing_under_ddp_and_fsdp2():
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_distributed_worker, args=(2, _free_port(), queue), nprocs=2, join=True, start_method="spawn")
    results = dict(queue.get() for _ in range(2))
    for rank, diffs in results.items():
        assert len(diffs) == 6
        for case, diff in diffs.items():
            assert diff < 2e-5, f"rank {rank} {case}: max abs gradient difference {diff}"


# --------------------------------------------------------------------------- precision, compile, recipes per card

CARDS = {  # name: (compute capability, torch.cuda.is_bf16_supported(): True on 7.x by emulation)
    "Tesla T4": ((7, 5), True), "Tesla V100-SXM2-16GB": ((7, 0), True), "NVIDIA A100-SXM4-80GB": ((8, 0), True),
    "NVIDIA H100 80GB HBM3": ((9, 0), True), "NVIDIA H200": ((9, 0), True), "Tesla P100-PCIE-16GB": ((6, 0), False),
}
EXPECTED = {  # name: (default precision, compile by default, recipe family)
    "Tesla T4": ("fp16", True, "cuda-fp16"), "Tesla V100-SXM2-16GB": ("fp16", True, "cuda-fp16"),
    "NVIDIA A100-SXM4-80GB": ("bf16", True, "cuda-bf16"), "NVIDIA H100 80GB HBM3": ("bf16", True, "cuda-bf16"),
    "NVIDIA H200": ("bf16", True, "cuda-bf16"), "Tesla P100-PCIE-16GB": ("fp32", False, "cuda-fp32"),
    "mps": ("fp32", False, "mps"), "cpu (no native bf16)": ("fp32", False, "cpu"),
}


def _mock_card(monkeypatch, name: str) -> torch.device:
    if name in CARDS:
        capability, bf16 = CARDS[name]
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        return torch.device("cuda")
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: False)
    return torch.device("mps" if name == "mps" else "cpu")


def test_precision_compile_and_recipe_per_card(monkeypatch, capsys):
    rows = []
    for name, (precision, compiled, family) in EXPECTED.items():
        with monkeypatch.context() as patch:
            device = _mock_card(patch, name)
            chosen = dev.choose_precision(device, None, False)
            recipe = recipe_for("110m", device if device.type == "cuda" else device.type)
            rows.append((name, dev.device_family(device), chosen.name, dev.default_compile(device, chosen),
                         recipe["torch_compile"], recipe["per_device_train_batch_size"]))
            assert (chosen.name, dev.default_compile(device, chosen), dev.device_family(device)) == \
                (precision, compiled, family), name
            assert recipe["torch_compile"] == compiled, name  # the recipe agrees with the compile default
    with capsys.disabled():
        print("\n| card | family | precision | torch.compile | 110m recipe compile | 110m batch |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(str(v) for v in row) + " |")


def test_forced_precisions_per_card(monkeypatch):
    device = _mock_card(monkeypatch, "Tesla T4")
    with pytest.warns(UserWarning, match="emulated"):
        assert dev.choose_precision(device, True, False).name == "bf16"  # forced: allowed, with the reason not to
    assert not dev.default_compile(device, dev.Precision(device, torch.bfloat16))
    assert dev.choose_precision(device, False, False).name == "fp32"  # --bf16 false and no --fp16: plain fp32
    assert dev.choose_precision(torch.device("mps"), None, True).name == "fp16"
    with pytest.raises(BabyLlamaError, match="mps"):
        dev.choose_precision(torch.device("mps"), True, False)
    with pytest.raises(BabyLlamaError, match="both"):
        dev.choose_precision(device, True, True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    with pytest.raises(BabyLlamaError, match="--fp16 true"):
        dev.choose_precision(device, True, False)


def test_device_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert dev.resolve_device("auto").type == "mps"
    assert dev.resolve_device("mps").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert dev.resolve_device("auto").type == "cpu"
    with pytest.raises(BabyLlamaError, match="no Apple GPU"):
        dev.resolve_device("mps")


# --------------------------------------------------------------------------- out of memory


def _raise(err):
    def step(*args):
        raise err
    return step


def test_out_of_memory_becomes_a_message_with_the_numbers(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: type("P", (), {"total_memory": 16 * 2 ** 30}))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: 15 * 2 ** 30)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d: 15.5 * 2 ** 30)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 15.2 * 2 ** 30)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    settings = MemorySettings(batch=16, seq_len=1024, accumulation=1, loss_impl="standard", precision="fp16")
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity ...")
    guarded = GuardOutOfMemory(_raise(oom), torch.device("cuda"), settings)
    with pytest.raises(BabyLlamaError) as caught:
        guarded(3, 1e-3)
    text = str(caught.value)
    for needle in ("batch 16 x seq_len 1024", "Tesla T4", "total 16.00 GiB", "peak 15.20 GiB",
                   "--per_device_train_batch_size 8 --gradient_accumulation_steps 2", "--gradient_checkpointing true",
                   "--loss_impl chunked", "--seq_len 512", "Tried to allocate 2.00 GiB"):
        assert needle in text, needle
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # no CUDA traceback chained
    # Already at the smallest settings: no advice to lower what cannot be lowered.
    small = MemorySettings(batch=1, seq_len=128, gradient_checkpointing=True, loss_impl="chunked", precision="bf16")
    with pytest.raises(BabyLlamaError, match="smaller --preset"):
        GuardOutOfMemory(_raise(oom), torch.device("cuda"), small)()


def test_mps_out_of_memory_and_other_errors():
    mps_oom = RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.2 GB)")
    assert is_out_of_memory(mps_oom) and not is_out_of_memory(RuntimeError("shape mismatch"))
    settings = MemorySettings(batch=4, seq_len=256)
    with pytest.raises(BabyLlamaError, match="out of memory on mps"):
        GuardOutOfMemory(_raise(mps_oom), torch.device("mps"), settings)()
    with pytest.raises(RuntimeError, match="shape mismatch"):  # anything else passes through untouched
        GuardOutOfMemory(_raise(RuntimeError("shape mismatch")), torch.device("cpu"), settings)()
    calls = []
    guarded = GuardOutOfMemory(lambda *a: calls.append(a) or "ok", torch.device("cpu"), settings)
    assert guarded(1, 2) == "ok" and calls == [(1, 2)]


def test_pretrain_with_checkpointing_and_fused_loss(prepared_512, tmp_path):
    """The loop's hooks: --gradient_checkpointing and --loss_impl fused train a tiny model (CPU fallback)."""
    import json

    from conftest import pretrain_tiny

    run = pretrain_tiny(prepared_512, tmp_path, "gc", gradient_checkpointing=True, loss_impl="fused", max_steps=6)
    text = (run / "manifest.json").read_text()
    assert '"gradient_checkpointing": true' in text and '"loss_impl": "fused"' in text
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(m["loss"] == m["loss"] for m in metrics if "loss" in m) and metrics
