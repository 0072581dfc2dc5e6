import hashlib
import json

import pytest

from babyllama.errors import BabyLlamaError
from babyllama.train.optim import learning_rate_at
from conftest import TINY_TRAIN, pretrain_tiny, resume_matches_whole


def test_run_folder_layout_and_metric_names(tiny_run):
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["kind"] == "pretrain"
    assert manifest["tokenizer"]["hash"] and manifest["data"]["fingerprint"] and manifest["versions"]["torch"]
    assert manifest["config"]["model"]["dim"] == 64 and manifest["config"]["train"]["max_steps"] == 40
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    assert {"step", "loss", "learning_rate", "grad_norm", "tokens_seen", "tokens_per_second"} <= set(logs[0])
    assert {"eval_loss", "eval_perplexity", "eval_bpb"} <= set(evals[-1])
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert (tiny_run / "samples.md").read_text().count("## step") == len(evals)
    assert (tiny_run / "model" / "config.json").is_file() and (tiny_run / "tokenizer" / "tokenizer.json").is_file()
    assert len(list((tiny_run / "checkpoints").iterdir())) <= 2  # save_total_limit default


def test_resume_is_bit_identical(prepared_512, tmp_path):
    """N steps in one go == k steps, stop, resume from the step-k checkpoint, N - k more."""
    whole = pretrain_tiny(prepared_512, tmp_path, "whole", max_steps=12, save_steps=5, save_total_limit=None,
                          dropout=0.1)
    assert resume_matches_whole(whole, 5, tmp_path)


def test_resume_rejects_a_changed_shape(tiny_run):
    from babyllama.train.loop import pretrain

    with pytest.raises(BabyLlamaError, match="changed model shape: dim was 64, now 96"):
        pretrain({"resume_from_checkpoint": str(tiny_run)}, {"dim": 96}, log=lambda _: None)


def test_schedules():
    kw = dict(total_steps=100, warmup_steps=10, peak=1.0, min_ratio=0.1)
    assert learning_rate_at(0, kind="cosine", **kw) == pytest.approx(0.1)
    assert learning_rate_at(9, kind="cosine", **kw) == pytest.approx(1.0)
    assert learning_rate_at(55, kind="cosine", **kw) == pytest.approx(0.55)
    assert learning_rate_at(100, kind="cosine", **kw) == pytest.approx(0.1)
    assert learning_rate_at(55, kind="linear", **kw) == pytest.approx(0.55)
    assert learning_rate_at(0, kind="constant", **kw) == 1.0
    assert learning_rate_at(0, kind="constant_with_warmup", **kw) == pytest.approx(0.1)
    # Warmup-stable-decay: the peak until the last 20% of the 90 decay steps (step 82), then linear to the floor.
    wsd = dict(kind="warmup_stable_decay", decay_ratio=0.2, **kw)
    assert learning_rate_at(5, **wsd) == pytest.approx(0.6)
    assert learning_rate_at(82, **wsd) == pytest.approx(1.0)
    assert learning_rate_at(91, **wsd) == pytest.approx(0.55)
    assert learning_rate_at(100, **wsd) == pytest.approx(0.1)


def test_max_time_fits_the_schedule_to_the_budget(prepared_512, tmp_path):
    budget = 8.0
    run = pretrain_tiny(prepared_512, tmp_path, "timed", max_steps=-1, max_time=budget, eval_max_tokens=1024,
                        logging_steps=1, num_samples=0, warmup_steps=2)
    manifest = json.loads((run / "manifest.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert manifest["status"] == "completed" and manifest["step"] >= 3
    # The schedule follows the clock: after warmup the learning rate only falls, and cosine reached its low end
    # just as the time ran out.
    decay = [row["learning_rate"] for row in rows[1:]]
    assert all(b <= a for a, b in zip(decay, decay[1:]))
    assert rows[-1]["learning_rate"] < 0.5 * 3e-3
    assert rows[-1]["elapsed_seconds"] < budget * 1.5


def test_existing_run_folder_is_not_overwritten(tiny_run):
    from babyllama.train.loop import pretrain

    before = (tiny_run / "manifest.json").read_text()
    with pytest.raises(BabyLlamaError, match="already exists"):
        pretrain({"data": json.loads(before)["data"]["folder"], "output_dir": str(tiny_run.parent),
                  "run_name": tiny_run.name, "max_steps": 1}, {}, log=lambda _: None)
    assert (tiny_run / "manifest.json").read_text() == before


def test_the_recipe_chooses_the_optimizer_unless_one_is_given(prepared_512, tmp_path):
    """260k and 15m on CPU train with Muon (it won at equal wall clock, bench/results/quality-*-600s-*.json); an
    explicit --optim, or --fsdp (which Muon cannot run under), keeps the user's choice or AdamW; presets not
    measured with Muon (42m) keep AdamW."""
    from babyllama.train.plan import plan_new

    def planned(**given):
        values = {"data": str(prepared_512), "preset": "15m", "device": "cpu", "output_dir": str(tmp_path), **given}
        return plan_new(values, {}).train

    chosen = planned()
    assert chosen.optim == "muon" and chosen.muon_learning_rate > 0
    assert planned(optim="adamw").optim == "adamw"
    assert planned(fsdp=True).optim == "adamw"
    assert planned(preset="260k").optim == "muon"
    assert planned(preset="42m").optim == "adamw"


def test_a_muon_recipe_gives_adamw_alone_its_own_learning_rate(prepared_512, tmp_path):
    """15m's Muon recipe sets its AdamW part (embeddings, head, norms) to 1.6e-2, far too high for AdamW training
    every weight (8e-3 was the worst of the sweep): --optim adamw and --fsdp get the AdamW-alone rate instead, and an
    explicit --learning_rate always wins."""
    from babyllama.train.plan import plan_new
    from babyllama.train.recipes import recipe_for

    def planned(**given):
        values = {"data": str(prepared_512), "preset": "15m", "device": "cpu", "output_dir": str(tmp_path), **given}
        return plan_new(values, {}).train

    recipe = recipe_for("15m", "cpu")
    assert planned().learning_rate == recipe["learning_rate"]
    assert planned(optim="adamw").learning_rate == recipe["adamw_alone_learning_rate"] != recipe["learning_rate"]
    assert planned(fsdp=True).learning_rate == recipe["adamw_alone_learning_rate"]
    assert planned(optim="adamw", learning_rate=3e-3).learning_rate == 3e-3
    assert planned(preset="260k", optim="adamw").learning_rate == recipe_for("260k", "cpu")["learning_rate"]


def test_sequence_length_warmup_cuts_the_same_rows_and_resumes_exactly(prepared_512, tmp_path):
    """--seq_len_warmup_ratio: windows of a quarter, then half of --seq_len, then all of it; the tokens per step and
    the exact resume stay."""
    from babyllama.train.cadence import training_context

    assert [training_context(f, 128, 0.4) for f in (0.0, 0.19, 0.2, 0.39, 0.4, 1.0)] == [32, 32, 64, 64, 128, 128]
    assert training_context(0.0, 128, 0.0) == 128
    whole = pretrain_tiny(prepared_512, tmp_path, "warm", max_steps=12, save_steps=5, save_total_limit=None,
                          logging_steps=1, seq_len_warmup_ratio=0.5)
    rows = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert [row["context"] for row in rows] == [16] * 3 + [32] * 3 + [64] * 6  # step s logs after s steps
    assert len({row["tokens_seen"] - 512 * row["step"] for row in rows}) == 1  # 8 x 64 tokens every step
    assert resume_matches_whole(whole, 5, tmp_path)


def test_init_std_scales_the_random_weights():
    import torch

    from babyllama.config import ModelConfig
    from babyllama.model import Llama

    torch.manual_seed(0)
    default = Llama(ModelConfig(dim=64, n_layers=2, n_heads=4, vocab_size=512))
    torch.manual_seed(0)
    wider = Llama(ModelConfig(dim=64, n_layers=2, n_heads=4, vocab_size=512), init_std=0.05)
    embed = default.model.embed_tokens.weight
    assert embed.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.allclose(wider.model.embed_tokens.weight, embed * 2.5)  # same draws, scaled
    norm = [p for n, p in wider.named_parameters() if n.endswith("norm.weight")][0]
    assert torch.equal(norm, torch.ones_like(norm))


def test_z_loss_changes_training_but_never_evaluation(prepared_512, tmp_path):
    """The model applies --z_loss in training mode only: validation losses and samples are plain cross-entropy."""
    import torch

    from babyllama.config import ModelConfig
    from babyllama.model import Llama

    torch.manual_seed(0)
    model = Llama(ModelConfig(dim=32, n_layers=1, n_heads=4, vocab_size=64, max_seq_len=16))
    model.z_loss = 1.0
    ids = torch.randint(0, 64, (2, 16))
    model.eval()
    with torch.no_grad():
        logits = model(ids[:, :-1]).float()
        expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1))
        assert torch.allclose(model(ids[:, :-1], ids[:, 1:]), expected, atol=1e-5)
    plain = pretrain_tiny(prepared_512, tmp_path, "plain", max_steps=6, logging_steps=1, z_loss=0.0)
    with_z = pretrain_tiny(prepared_512, tmp_path, "z", max_steps=6, logging_steps=1, z_loss=1e-2)
    losses = [[json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
               if '"loss"' in line] for run in (plain, with_z)]
    # The first step's logged loss comes before any update and is the cross-entropy either way; later ones differ.
    assert losses[0][0] == pytest.approx(losses[1][0], abs=1e-6)
    assert losses[0][-1] != losses[1][-1]


def test_z_loss_comes_from_the_recipe_and_a_checkpoint_from_before_it_resumes_without_it(prepared_512, tmp_path):
    from babyllama.train.plan import plan_run

    base = {**TINY_TRAIN, "data": str(prepared_512), "output_dir": str(tmp_path), "max_steps": 4}
    assert plan_run({**base, "run_name": "r"}, {}).train.z_loss == 1e-4  # the 260k CPU recipe
    assert plan_run({**base, "run_name": "r", "preset": "42m"}, {}).train.z_loss == 0.0  # not measured there
    assert plan_run({**base, "run_name": "r", "z_loss": 0.0}, {}).train.z_loss == 0.0  # the user's choice wins
    run = pretrain_tiny(prepared_512, tmp_path, "old", max_steps=4, save_steps=2, z_loss=0.0)
    checkpoint = sorted((run / "checkpoints").iterdir())[0]
    state_file = checkpoint / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["train"]["z_loss"]  # as written before the option existed
    state_file.write_text(json.dumps(state))
    index_file = checkpoint / "checkpoint.json"  # its index as that older babyllama would have written it
    index = json.loads(index_file.read_text())
    index["files"]["trainer_state.json"] = {"bytes": state_file.stat().st_size,
                                            "sha256": hashlib.sha256(state_file.read_bytes()).hexdigest()}
    index_file.write_text(json.dumps(index))
    assert plan_run({"resume_from_checkpoint": str(checkpoint)}, {}).train.z_loss == 0.0


@pytest.mark.parametrize("option, message", [
    (dict(seq_len_warmup_ratio=1.5), "--seq_len_warmup_ratio must be in"),
    (dict(seq_len_warmup_ratio=0.2, seq_len=62), "divisible by 4"),
    (dict(init_std=0.0), "--init_std must be a positive"),
    (dict(z_loss=-1e-4), "--z_loss must be 0"),
    (dict(z_loss=float("nan")), "--z_loss must be 0"),
])
def test_warmup_and_init_options_are_checked(prepared_512, tmp_path, option, message):
    with pytest.raises(BabyLlamaError, match=message):
        pretrain_tiny(prepared_512, tmp_path, "bad", **option)
