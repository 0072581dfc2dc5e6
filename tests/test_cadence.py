"""The loop's cadence: when to stop, log, evaluate and save, and a learning rate that follows the clock under
--max_time (monotonic after warmup, no step total that jumps)."""

from __future__ import annotations

import pytest

from babyllama.train import cadence as cadence_module
from babyllama.train.cadence import Cadence
from babyllama.train.optim import learning_rate_at, learning_rate_for


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def simulate(monkeypatch, budget=100.0, step_seconds=0.05, eval_seconds=1.5, jitter=True, resume_at=None):
    clock = Clock()
    monkeypatch.setattr(cadence_module.time, "time", clock)
    start = clock.now
    c = Cadence(max_steps=-1, max_time=budget, epoch_steps=10**9, logging_steps=10, eval_steps=None, save_steps=None,
                warmup_steps=0, warmup_ratio=0.02, step=0, elapsed=0.0)
    lrs, evals, saves, step = [], 0, 0, 0
    while not c.finished(step):
        c.step_started(step)
        warmup, decay = c.position(step)
        lrs.append(learning_rate_for(warmup=warmup, decay=decay, peak=1.0, kind="cosine", min_ratio=0.1))
        clock.now += step_seconds * (1.5 if jitter and step % 7 == 0 else 1.0)  # uneven steps
        step += 1
        c.adopt(c.share(step, clock.now - start))
        evaluated = c.should_eval(step)
        if evaluated:
            evals += 1
            clock.now += eval_seconds
            c.overhead(eval_seconds, evaluation=True)
        saves += c.should_save(step, evaluated)
    return c, lrs, evals, saves, step, clock.now - start


def test_learning_rate_decays_monotonically_with_the_clock(monkeypatch):
    c, lrs, evals, saves, steps, elapsed = simulate(monkeypatch, eval_seconds=0.4)
    peak_at = lrs.index(max(lrs))
    assert c.warmup_steps == peak_at + 1 and 0 < peak_at < 0.05 * steps  # ~2% of the steps the budget holds
    after = lrs[peak_at:]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))  # never back up
    assert after[-1] == pytest.approx(0.1, abs=0.01)  # the floor, reached as the budget ends
    assert 8 <= evals <= 10 and saves == evals  # about 10 evaluations, a checkpoint at each
    assert 100.0 - 2 * 0.4 <= elapsed <= 100.0  # room kept for the final evaluation


def test_costly_evaluations_are_spaced_to_a_small_share_of_the_budget(monkeypatch):
    """1.5 s evaluations in a 100 s budget: the first at 10 s, then 20 x 1.5 = 30 s apart (40 s, 70 s), not every
    10 s, so mid-run evaluations take at most about 5% of the budget (plus the first, before it is timed)."""
    c, lrs, evals, saves, steps, elapsed = simulate(monkeypatch, eval_seconds=1.5)
    assert evals == 3 and saves == evals and c.eval_interval == pytest.approx(30.0)
    assert 100.0 - 2 * 1.5 <= elapsed <= 100.0


def test_the_bar_counts_seconds_of_a_fixed_total():
    c = Cadence(max_steps=-1, max_time=60.0, epoch_steps=5, logging_steps=10, eval_steps=None, save_steps=None,
                warmup_steps=0, warmup_ratio=0.0, step=0, elapsed=0.0)
    assert c.bar_total() == (60.0, "s") and c.total is None and c.describe() == "60s budget"


def test_steps_mode_keeps_the_step_schedule():
    c = Cadence(max_steps=100, max_time=None, epoch_steps=5, logging_steps=10, eval_steps=None, save_steps=None,
                warmup_steps=0, warmup_ratio=0.1, step=0, elapsed=0.0)
    for step in (0, 5, 10, 50, 99):
        warmup, decay = c.position(step)
        assert learning_rate_for(warmup=warmup, decay=decay, peak=1.0, kind="cosine", min_ratio=0.1) == \
            pytest.approx(learning_rate_at(step, total_steps=100, warmup_steps=10, peak=1.0, kind="cosine",
                                           min_ratio=0.1))
    assert c.eval_steps == 10 and [s for s in range(1, 101) if c.should_eval(s)] == list(range(10, 100, 10))
    assert [s for s in range(1, 101) if c.should_save(s, c.should_eval(s))] == list(range(10, 100, 10))
    assert c.should_log(100) and c.finished(100) and not c.should_save(100, False)


def test_one_save_rule_with_save_steps():
    c = Cadence(max_steps=20, max_time=None, epoch_steps=5, logging_steps=10, eval_steps=4, save_steps=5,
                warmup_steps=0, warmup_ratio=0.0, step=0, elapsed=0.0)
    assert [s for s in range(1, 21) if c.should_save(s, c.should_eval(s))] == [5, 10, 15]


def test_resuming_continues_the_decay(monkeypatch):
    c, lrs, *_ = simulate(monkeypatch, budget=20.0)
    saved = c.state_dict()
    again = Cadence(max_steps=-1, max_time=20.0, epoch_steps=10**9, logging_steps=10, eval_steps=None,
                    save_steps=None, warmup_steps=0, warmup_ratio=0.02, step=100, elapsed=10.0)
    again.load_state_dict(saved, 100)
    warmup, decay = again.position(100)
    assert warmup == 1.0 and 0.4 < decay < 0.6  # halfway through the budget: halfway through the decay


def test_a_time_budget_overrun_by_a_slow_step_ends_the_run_normally(prepared_512, tmp_path):
    """A step (or evaluation) that carries the clock past the budget must not break the progress bar: tqdm drops a
    total that its count passes, and the seconds bar's '{total:.0f}' then failed with a TypeError."""
    import json

    from babyllama.train import faults
    from conftest import pretrain_tiny

    faults.arm("train.step", "sleep", nth=2, seconds=3.0)  # the 2nd step ends well past the 2 s budget
    try:
        run = pretrain_tiny(prepared_512, tmp_path, "overrun", max_steps=-1, max_time=2.0, disable_tqdm=False)
    finally:
        faults.disarm()
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
