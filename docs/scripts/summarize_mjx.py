"""Table and figure of runs/mjx/P{P}_seed{S}/{method}/metrics.csv (written by `stablebptt compare`)."""

import csv
import glob
import json
import re
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from stablebptt.runs.plotting import METHOD_COLORS

root, out = sys.argv[1], sys.argv[2]
curves, diverged = {}, {}  # (P, method) -> test loss per epoch for each seed; epochs where a run diverged
for path in sorted(glob.glob(f"{root}/P*_seed*/*/metrics.csv")):
    P, seed, m = re.search(r"P(\d)_seed(\d+)/(\w)/", path).groups()
    with open(path) as f:
        loss = np.array([float(r["test_loss"] or "nan") for r in csv.DictReader(f)])
    curves.setdefault((int(P), m), []).append(loss[np.isfinite(loss)])
    with open(path.replace("metrics.csv", "status.json")) as f:
        status = json.load(f)
    if status["status"] == "diverged":
        diverged.setdefault((int(P), m), []).append(status["diverged_epoch"])
poles = sorted({p for p, _ in curves})
fig, axes = plt.subplots(1, len(poles), figsize=(5.2 * len(poles), 3.8), sharey=True, squeeze=False)
print("| P | method | final test loss: mean (min - max) | best test loss: mean (min - max) | diverged |")
print("|---|---|---|---|---|")
for ax, P in zip(axes[0], poles):
    for m in "RMCS":
        runs = curves[(P, m)]
        for r in runs:
            ax.plot(np.arange(1, len(r) + 1), r, color=METHOD_COLORS[m], lw=0.7, alpha=0.5)
        n = min(len(r) for r in runs)
        ax.plot(np.arange(1, n + 1), np.mean([r[:n] for r in runs], axis=0), color=METHOD_COLORS[m], lw=2.2, label=m)
        final, best = np.array([r[-1] for r in runs]), np.array([r.min() for r in runs])
        div = diverged.get((P, m), [])
        note = f"{len(div)} of {len(runs)} (epochs {', '.join(map(str, sorted(div)))})" if div else f"0 of {len(runs)}"
        print(
            f"| {P} | {m} | {final.mean():.4f} ({final.min():.4f} - {final.max():.4f}) | "
            f"{best.mean():.4f} ({best.min():.4f} - {best.max():.4f}) | {note} |"
        )
    ax.set_yscale("log")
    ax.set_title(f"mjx-cartpole, chain of {P} links")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3, which="both")
axes[0][0].set_ylabel("test loss: 1 - mean cos(link angle)")
axes[0][0].legend(title="thin: one seed; thick: mean", fontsize=8, title_fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=110)
