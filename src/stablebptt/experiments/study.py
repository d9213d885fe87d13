"""The remedies for exploding gradients compared on the same simulators (issue 43): SHAC's study.

Its runs are kept as the reproduction campaign keeps its own (`campaign`: one compact record per finished run,
trained in the background across stops of work, resumed where they stopped), under ``results/shac``:
``stablebptt reproduce run --study shac``.

Fairness, as the study promises it:

- **equal environment steps**: the paper's loop unrolls its task's horizon from 8 states, 32 updates an epoch,
  1000 epochs; a SHAC epoch is ``n_train // batch_size`` updates of `batch_size` environments for `window`
  steps. `shac_epochs` gives the SHAC epochs of as many environment steps as the paper's 1000 epochs, so that the
  committed records of the paper's loop (`campaign`) are compared at the same budget;
- **published hyperparameters, not tuned on reported seeds**: DiffRL's SHAC recipe (`training.shac.diffrl_recipe`)
  with DiffRL's cart-pole learning rates (actor 1e-2, critic 1e-3) and its 64 cart-pole environments; the
  paper's loop keeps the paper's settings;
- **the same three seeds** (42, 43, 44) as the campaign, reported with their spread;
- **loop-equal rules**: R and C under the same SHAC loop, everything else equal.
"""

from __future__ import annotations

from typing import Any

from ..tasks import make_task
from ..training.shac import diffrl_recipe
from .campaign import SEEDS, Stage

PAPER_EPOCHS, PAPER_BATCH, PAPER_UPDATES = 1000, 8, 32  # the paper's loop, as the campaign trains it
SHAC_BATCH, SHAC_TRAIN = 64, 256  # DiffRL's 64 cart-pole environments; 4 updates an epoch


def shac_epochs(task: str, window: int = 32, batch_size: int = SHAC_BATCH, n_train: int = SHAC_TRAIN) -> int:
    """SHAC epochs of as many environment steps as the paper's 1000 epochs of `task` (rounded up)."""
    horizon = make_task(task).horizon
    paper = PAPER_EPOCHS * PAPER_UPDATES * PAPER_BATCH * horizon
    per_epoch = (n_train // batch_size) * batch_size * window
    return -(-paper // per_epoch)


def _shac_grid(task: str, levels: dict[str, list[Any]], **recipe: Any) -> dict[str, list[Any]]:
    settings = diffrl_recipe(lr=1e-2, critic_lr=1e-3, batch_size=SHAC_BATCH, n_train=SHAC_TRAIN, **recipe)
    return {**levels, "method": ["R", "C"], "seed": list(SEEDS), **{k: [v] for k, v in settings.items()}}


STUDY_STAGES: tuple[Stage, ...] = (
    Stage(
        "shac-cartpole",
        "SHAC with R and C, cart pole 2, 4 and 6 poles, the paper's budget",
        "cartpole",
        _shac_grid("cartpole", {"n_poles": [2, 4, 6]}),
        epochs=shac_epochs("cartpole"),
    ),
    Stage(
        "shac-repulsion",
        "SHAC with R and C, repulsion rc 0.001, the paper's budget",
        "repulsion",
        _shac_grid("repulsion", {"rc": [0.001]}),
        epochs=shac_epochs("repulsion"),
    ),
)
