"""SHAC's study (experiments/study.py): its runs are valid configurations of the SHAC protocol, at the paper's
budget of environment steps, with the campaign's seeds, R and C under one loop."""

from __future__ import annotations

import pytest

from stablebptt.experiments.campaign import SEEDS
from stablebptt.experiments.study import STUDY_STAGES, shac_epochs
from stablebptt.tasks import make_task


@pytest.mark.parametrize("task", ["cartpole", "repulsion", "quantum"])
def test_shac_epochs_give_the_papers_environment_steps(task):
    paper = 1000 * 32 * 8 * make_task(task).horizon  # the paper's loop: 1000 epochs of 32 updates of 8 states
    per_epoch = (256 // 64) * 64 * 32
    epochs = shac_epochs(task)
    assert epochs * per_epoch >= paper > (epochs - 1) * per_epoch


def test_every_stage_is_shac_with_r_and_c_on_the_campaigns_seeds_at_the_papers_budget():
    for stage in STUDY_STAGES:
        runs = stage.runs()
        assert stage.epochs == shac_epochs(stage.task)
        trains = [r.config.train for r in runs]
        assert {t.protocol for t in trains} == {"shac"} and {t.method for t in trains} == {"R", "C"}
        assert {t.seed for t in trains} == set(SEEDS) and {t.epochs for t in trains} == {stage.epochs}
        assert len({r.name for r in runs}) == len(runs)  # one folder and one record per run

        # loop-equal: the runs of a level differ in the rule and the seed only
        def level(run):
            return tuple(sorted(run.config.task_settings.items()))

        for key in {level(r) for r in runs}:
            same = [t.values() for r, t in zip(runs, trains) if level(r) == key]
            differing = {k for k in same[0] if len({repr(v[k]) for v in same}) > 1}
            assert differing <= {"method", "seed"}, differing
