"""Two kinds of evidence and the regret of each choice, on small synthetic records with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from stablebptt.experiments import evidence
from stablebptt.experiments.report import RunRecord


def _record(method, poles, seed, curve, clip="none", lr=0.001, task="cartpole"):
    """A finished run whose test loss per epoch is `curve` (epochs 1, 2, ...)."""
    level = {"cartpole": "n_poles", "repulsion": "rc"}[task]
    config = {
        "task": task,
        "task_settings": {level: poles},
        "train": {"method": method, "seed": seed, "clip": clip, "lr": lr, "epochs": len(curve)},
    }
    rows = [{"epoch": e, "test_loss": v} for e, v in enumerate(curve, start=1)]
    return RunRecord(f"{method}{poles}{clip}{lr}{seed}", config, "complete", rows, epoch=len(curve))


def _rows(table):
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


FINALS = {  # (poles, clip, seed) -> final test loss of R, M, C, S
    (1, "none", 42): (4.0, 3.0, 2.0, 9.0),
    (1, "value", 42): (1.0, 3.0, 2.0, 9.0),
    (1, "norm", 42): (5.0, 0.5, 1.0, 9.0),
    (1, "none", 43): (6.0, 9.0, 3.0, 9.0),
    (1, "none", 44): (1.0, 2.0, 4.0, 0.0),  # S at exactly 0: the float32 floor
    (2, "none", 42): (8.0, 9.0, 2.0, 9.0),
    (2, "value", 43): (3.0, 1.0, 6.0, 9.0),  # stage e2's first records
}
RECORDS = [
    _record(m, p, s, [10.0, v], clip=clip)
    for (p, clip, s), finals in FINALS.items()
    for m, v in zip("RMCS", finals, strict=True)
]


def test_clip_table_the_papers_seed_beside_ours():
    rows = _rows(evidence.clip_table(RECORDS))
    assert [r[:2] for r in rows] == [[f"cart pole {p} pole{'s' * (p > 1)}", c] for p in (1, 2) for c in evidence.CLIPS]
    by = {(r[0], r[1]): r[2:] for r in rows}
    # seed 42: R/C (bold below 1: R ahead) and the best method; seeds 43, 44: the same per seed, '-' if missing
    assert by["cart pole 1 pole", "none"] == ["2", "C", "2, **0.25**", "C, S"]
    assert by["cart pole 1 pole", "value"] == ["**0.5**", "R", "-, -", "-, -"]
    assert by["cart pole 1 pole", "norm"] == ["5", "M", "-, -", "-, -"]
    assert by["cart pole 2 poles", "value"] == ["-", "-", "**0.5**, -", "M, -"]


def test_tally_per_kind_of_evidence():
    published, ours, clipped, e2 = (evidence.tally(RECORDS, kind) for kind in evidence.EVIDENCE)
    assert published.planned == 33 and ours.planned == 33 and clipped.planned == 22 and e2.planned == 44
    # seed 42 at 1 pole (none, value, norm) and 2 poles (none): R/C 2, 0.5, 5, 4
    assert (published.compared, published.c_ahead, published.r_ahead) == (4, 3, 1)
    assert published.best == {"R": 1, "M": 1, "C": 2, "S": 0}
    # no clipping, seeds 42, 43, 44 at 1 pole and 42 at 2 poles: R/C 2, 2, 0.25, 4
    assert (ours.compared, ours.c_ahead, ours.r_ahead) == (4, 3, 1)
    assert ours.best == {"R": 0, "M": 0, "C": 3, "S": 1}
    assert (e2.compared, e2.r_ahead, e2.best["M"]) == (1, 1, 1)
    table = evidence.evidence_table(RECORDS)
    assert "| the paper's figures: seed 42, clip none, value, norm | 4 of 33 | 3 | 1 | 1 / 1 / 2 / 0 |" in table


def test_regret_of_fixed_choices_against_the_best_run_of_the_cell():
    cells = evidence.cells(RECORDS)
    assert [str(c) for c in cells] == [
        "cart pole 1 pole, seed 42",
        "cart pole 1 pole, seed 43",
        "cart pole 1 pole, seed 44",
        "cart pole 2 poles, seed 42",
        "cart pole 2 poles, seed 43",
    ]
    best = [0.5, 3.0, 0.0, 2.0, 1.0]  # every run of the cell counts: seed 42 at 1 pole has M clipped by norm
    assert [c.best for c in cells] == best
    floor = float(np.float32(2.0**-23))
    by_choice = {c.label: {str(cell): r for cell, r in evidence.regrets(cells, c)} for c in evidence.CHOICES}
    assert by_choice["always C"] == {
        "cart pole 1 pole, seed 42": 2.0 / 0.5,
        "cart pole 1 pole, seed 43": 1.0,
        "cart pole 1 pole, seed 44": pytest.approx(4.0 / floor),  # S at 0 counts as the floor
        "cart pole 2 poles, seed 42": 1.0,
    }  # not recorded at 2 poles seed 43 (clipped runs only): left out, not a win or a loss
    assert by_choice["always S"]["cart pole 1 pole, seed 44"] == 1.0
    assert by_choice["always C, clipped by norm"] == {"cart pole 1 pole, seed 42": 2.0}
    assert by_choice["always C, clipped by value"] == {
        "cart pole 1 pole, seed 42": 4.0,
        "cart pole 2 poles, seed 43": 6.0,
    }
    s = evidence.summary(cells, evidence.fixed("C"))
    assert s is not None and s.cells == 4 and s.median == pytest.approx((1.0 + 4.0) / 2) and s.best_in == 2
    assert str(s.worst[0]) == "cart pole 1 pole, seed 44" and s.worst_elsewhere == (cells[3], 1.0)
    assert evidence.summary(cells, evidence.tuned_lr("R")) is None  # one learning rate only
    row = _rows(evidence.regret_table(cells, [evidence.fixed("C")]))[0]
    assert row[:3] == ["always C", "4 of 5", "2.5"] and row[3].endswith("(cart pole 1 pole, seed 44)")
    assert row[4] == "1 (cart pole 2 poles, seed 42)" and row[5] == "2 cells"


def test_best_learning_rate_is_chosen_by_the_median_over_seeds():
    finals = {1e-4: [3.0, 3.0, 3.0], 1e-3: [1.0, 5.0, 6.0], 1e-2: [2.0, 2.0, 9.0]}  # medians 3, 5, 2
    records = [_record("R", 2, 42 + i, [1.0, v], lr=lr) for lr, vs in finals.items() for i, v in enumerate(vs)]
    records += [_record("C", 2, 42 + i, [1.0, 1.5]) for i in range(3)]
    cells = evidence.cells(records)
    found = {str(c): r for c, r in evidence.regrets(cells, evidence.tuned_lr("R"))}
    # lr 1e-2 on every seed, though seed 42 was best at 1e-3; the reference is the best run of each cell
    assert found == {
        "cart pole 2 poles, seed 42": 2.0 / 1.0,
        "cart pole 2 poles, seed 43": 2.0 / 1.5,
        "cart pole 2 poles, seed 44": 9.0 / 1.5,
    }


def test_a_pilot_picks_by_the_loss_after_k_epochs_and_pays_the_final_one():
    curves = {"R": [1.0, 0.1, 0.9], "M": [1.0, 0.5, 0.2], "C": [1.0, 0.3, 0.3], "S": [1.0, 0.2, 0.05]}
    records = [_record(m, 3, 42, c, task="repulsion") for m, c in curves.items()]
    (cell,) = evidence.cells(records)
    assert str(cell) == "repulsion rc 3, seed 42"
    assert evidence.pilot(1).final(cell) == 0.9  # a tie after 1 epoch: the first of R, M, C, S
    assert evidence.pilot(2).final(cell) == 0.9  # R is best after 2 epochs and ends worst
    assert evidence.pilot(3).final(cell) == 0.05
    assert evidence.pilot(4).final(cell) is None  # no run has a 4th epoch
    assert evidence.regrets([cell], evidence.pilot(2)) == [(cell, pytest.approx(0.9 / 0.05))]
