"""PNG plots of a training run, drawn with matplotlib's Agg backend (no display needed).

matplotlib is imported inside the functions: the CLI must stay light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(folder: Path, model, train_data, heldout, history) -> dict:
    """Write data.png and curves.png into `folder`; return {name: relative path}."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "data": plot_data(folder / "data.png", model, train_data, heldout),
        "curves": plot_curves(folder / "curves.png", history),
    }


def plot_data(path: Path, model, train_data, heldout) -> str:
    """2 features: the samples and the decision boundary w·x + b = 0. Otherwise held-out logits per class."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    w = model.w.numpy().reshape(-1)
    b = float(model.b.numpy()[0])
    if train_data.num_features == 2:
        for data, marker, alpha in ((train_data, "o", 0.25), (heldout, "x", 0.6)):
            for label, color in ((0, "tab:blue"), (1, "tab:orange")):
                points = data.features[data.labels == label]
                ax.scatter(
                    points[:, 0],
                    points[:, 1],
                    s=6,
                    marker=marker,
                    c=color,
                    alpha=alpha,
                    label=f"class {label} ({'train' if data is train_data else 'held-out'})",
                )
        xs = np.linspace(train_data.features[:, 0].min(), train_data.features[:, 0].max(), 100)
        if abs(w[1]) > 1e-12:
            ax.plot(xs, -(w[0] * xs + b) / w[1], "k-", label="decision boundary")
            ax.set_ylim(train_data.features[:, 1].min() - 1, train_data.features[:, 1].max() + 1)
        else:
            ax.axvline(-b / w[0], color="k", label="decision boundary")
        names = train_data.feature_names
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_title("Data and learned decision boundary")
    else:
        logits = heldout.features @ w + b
        for label, color in ((0, "tab:blue"), (1, "tab:orange")):
            ax.hist(logits[heldout.labels == label], bins=40, alpha=0.6, color=color, label=f"class {label}")
        ax.axvline(0.0, color="k", label="decision boundary (logit 0)")
        ax.set_xlabel("logit w·x + b")
        ax.set_title(f"Held-out logits by class ({train_data.num_features} features)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"{path.parent.name}/{path.name}"


def plot_curves(path: Path, history) -> str:
    """Training loss and accuracy per step."""
    plt = _pyplot()
    steps = [m.step for m in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(steps, [m.loss for m in history], "-", color="tab:red")
    ax_loss.set_title("Training loss")
    ax_acc.plot(steps, [m.accuracy for m in history], "-", color="tab:green")
    ax_acc.set_title("Training accuracy")
    ax_acc.set_ylim(0, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"{path.parent.name}/{path.name}"
