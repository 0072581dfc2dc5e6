"""Plots of a run's metrics (PNG, matplotlib's Agg backend: no display needed).

Readable by rule: every axis labelled, a legend wherever there is more than one line, and a log scale on the loss and
gradient-norm axes when the values span more than a factor of LOG_SPAN (early loss dwarfs late loss otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from babyllama.records.registry import Run

LOG_SPAN = 3.0
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _maybe_log(ax, values: list[float]) -> None:
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > LOG_SPAN:
        ax.set_yscale("log")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def loss_plot(run: Run, path: Path) -> Optional[Path]:
    """Training and validation loss against steps."""
    steps, loss = run.series("loss")
    eval_steps, eval_loss = run.series("eval_loss")
    if not loss and not eval_loss:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if loss:
        ax.plot(steps, loss, label="train loss", color="tab:blue", linewidth=1.6)
    if eval_loss:
        ax.plot(eval_steps, eval_loss, label="validation loss", color="tab:orange", marker="o", linewidth=1.6)
    _maybe_log(ax, loss + eval_loss)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(f"{run.name}: loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def simple_plot(run: Run, key: str, path: Path, ylabel: str, title: str, log: bool = False,
                label: Optional[str] = None) -> Optional[Path]:
    steps, values = run.series(key)
    if not values:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(steps, values, label=label or key, color="tab:green", linewidth=1.6)
    if log:
        _maybe_log(ax, values)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{run.name}: {title}")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_yscale() == "linear":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    ax.legend()
    return _save(fig, path)


def report_plots(run: Run, folder: Path) -> dict[str, Path]:
    """loss.png, lr.png, throughput.png, grad_norm.png in folder (those the run has data for)."""
    made = {
        "loss": loss_plot(run, folder / "loss.png"),
        "lr": simple_plot(run, "learning_rate", folder / "lr.png", "learning rate", "learning-rate schedule",
                          label="learning rate"),
        "throughput": simple_plot(run, "tokens_per_second", folder / "throughput.png", "tokens per second",
                                  "training throughput", label="tokens/s (logging window)"),
        "grad_norm": simple_plot(run, "grad_norm", folder / "grad_norm.png", "global gradient norm (before clipping)",
                                 "gradient norm", log=True, label="gradient norm"),
    }
    return {k: v for k, v in made.items() if v is not None}


def compare_plot(runs: list[Run], path: Path) -> Path:
    """The runs' losses overlaid, by optimizer step (left) and by training tokens (right): runs with different batch
    sizes are only comparable on the right."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_values: list[float] = []
    for i, run in enumerate(runs):
        color = colors[i % len(colors)]
        for ax, x in zip(axes, ("step", "tokens")):
            xs, ys = run.series("loss", x)
            if ys:
                ax.plot(xs, ys, color=color, linewidth=1.5, label=f"{run.name} train")
            exs, eys = run.series("eval_loss", x)
            if eys:
                ax.plot(exs, eys, color=color, linewidth=1.5, linestyle="--", marker="o", markersize=4,
                        label=f"{run.name} validation")
            all_values += ys + eys
    for ax, xlabel in zip(axes, ("optimizer step", "training tokens seen")):
        _maybe_log(ax, all_values)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("cross-entropy loss (nats/token)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("loss by step")
    axes[1].set_title("loss by tokens")
    return _save(fig, path)
