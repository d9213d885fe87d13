"""SHAC's study (experiments/study.py): its runs are valid configurations of the SHAC protocol, at the paper's
budget of environment steps, with the campaign's seeds, R and C under one loop; its generated page answers from
the records and says what it lacks."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from stablebptt.experiments.campaign import PAPER_TASKS, SEEDS, read_record
from stablebptt.experiments.study import (
    APG_LRS,
    BRAX_ENVS,
    STUDY_STAGES,
    TUNE_SEED,
    brax_steps,
    env_steps_per_epoch,
    seed_curves,
    shac_epochs,
    write_study_pages,
)
from stablebptt.tasks import make_task


@pytest.mark.parametrize("task", ["cartpole", "repulsion", "quantum"])
def test_shac_epochs_give_the_papers_environment_steps(task):
    paper = 1000 * 32 * 8 * make_task(task).horizon  # the paper's loop: 1000 epochs of 32 updates of 8 states
    per_epoch = (256 // 64) * 64 * 32
    epochs = shac_epochs(task)
    assert epochs * per_epoch >= paper > (epochs - 1) * per_epoch


def test_every_stage_is_shac_with_r_and_c_or_apgs_recipe_with_r_at_the_papers_budget():
    for stage in (s for s in STUDY_STAGES if s.task in PAPER_TASKS):
        runs = stage.runs()
        trains = [r.config.train for r in runs]
        assert len({r.name for r in runs}) == len(runs)  # one folder and one record per run
        if stage.key.startswith("apg"):  # R at 3 learning rates, on the tuning seed and the reported ones
            assert {t.protocol for t in trains} == {"stream"} and {t.method for t in trains} == {"R"}
            assert {t.seed for t in trains} == {TUNE_SEED, *SEEDS} and {t.lr for t in trains} == set(APG_LRS)
            varying = {"seed", "lr"}
        else:
            assert stage.epochs == shac_epochs(stage.task)
            assert {t.protocol for t in trains} == {"shac"} and {t.method for t in trains} == {"R", "C"}
            assert {t.seed for t in trains} == set(SEEDS)
            varying = {"method", "seed"}
        assert {t.epochs for t in trains} == {stage.epochs}
        # the paper's environment steps (1000 epochs of 32 updates of 8 states over the horizon), rounded up
        paper = 1000 * 32 * 8 * make_task(stage.task).horizon
        per_epoch = env_steps_per_epoch({"task": stage.task, "train": runs[0].config.to_json()["train"]})
        assert stage.epochs * per_epoch >= paper > (stage.epochs - 1) * per_epoch

        # loop-equal: the runs of a level differ in what the stage varies only
        def level(run):
            return tuple(sorted(run.config.task_settings.items()))

        for key in {level(r) for r in runs}:
            same = [t.values() for r, t in zip(runs, trains) if level(r) == key]
            differing = {k for k in same[0] if len({repr(v[k]) for v in same}) > 1}
            assert differing <= varying, differing


def test_the_brax_part_holds_all_but_the_recipe_equal_per_environment():
    """Per environment, APG's recipe (R) and SHAC (R, M, C): the same task (so the same test loss), environments,
    window, test states, seeds and environment steps; the budget is `brax_steps` for every run."""
    brax = [s for s in STUDY_STAGES if s.task.startswith("brax:")]
    assert sorted({s.task for s in brax}) == sorted(f"brax:{e}" for e in BRAX_ENVS)
    for env in BRAX_ENVS:
        apg, shac = (next(s for s in brax if s.key == f"{k}-brax-{env.replace('_', '-')}") for k in ("apg", "shac"))
        runs = apg.runs() + shac.runs()
        assert len({r.name for r in runs}) == len(runs) == 12
        assert {r.config.train.method for r in apg.runs()} == {"R"}
        assert {r.config.train.method for r in shac.runs()} == {"R", "M", "C"}
        assert {r.config.train.protocol for r in apg.runs()} == {"stream"}
        assert {r.config.train.protocol for r in shac.runs()} == {"shac"}
        assert len({tuple(sorted(r.config.task_settings.items())) for r in runs}) == 1  # one task
        for field in ("batch_size", "n_train", "n_test", "window", "epochs"):
            assert len({getattr(r.config.train, field) for r in runs}) == 1, field
        assert {r.config.train.seed for r in runs} == set(SEEDS)
        steps = {env_steps_per_epoch(r.config.to_json()) * r.config.train.epochs for r in runs}
        assert steps == {brax_steps()}


# ------------------------------------------------------------------------------------------------ the report

RESULTS = Path(__file__).resolve().parents[2] / "results"
SHAC_RUN = "clip=norm_*_protocol=shac_window=32_seed"  # the plain-critic SHAC stages' runs (not APG's, not shac-critic)


def _copy(src_root: Path, dst_root: Path, pattern: str) -> list[Path]:
    """Copy the committed records of cart pole matching `pattern` into `dst_root` (the layout TASK/NAME)."""
    found = sorted((src_root / "cartpole").glob(pattern))
    assert len(found) == 3, (pattern, found)  # three seeds
    (dst_root / "cartpole").mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, dst_root / "cartpole" / p.name)) for p in found]


def test_the_paper_loop_and_shac_records_see_the_same_environment_steps():
    shac = read_record(next((RESULTS / "shac/cartpole").glob(f"method=R_poles=2_{SHAC_RUN}=42.json.gz")))
    paper = read_record(RESULTS / "paper/cartpole/method=R_poles=2_clip=none_seed=42.json.gz")
    assert env_steps_per_epoch(shac.config) == (256 // 64) * 64 * 32  # 4 windows of 64 environments, 32 steps
    assert env_steps_per_epoch(paper.config) == 256 * 100  # 256 states (32 updates of 8) over the horizon
    shac_steps = env_steps_per_epoch(shac.config) * len(shac.rows)
    paper_steps = env_steps_per_epoch(paper.config) * len(paper.rows)
    assert shac_steps == paper_steps == 25_600_000


def test_the_records_page_says_what_is_missing_and_answers_from_the_records(tmp_path):
    shac_root, paper_root = tmp_path / "shac", tmp_path / "paper"
    shac_r = _copy(RESULTS / "shac", shac_root, f"method=R_poles=2_{SHAC_RUN}=4?.json.gz")
    paper_c = _copy(RESULTS / "paper", paper_root, "method=C_poles=2_clip=none_seed=4*.json.gz")
    _copy(RESULTS / "paper", paper_root, "method=R_poles=2_clip=none_seed=4*.json.gz")
    (shac_root / "cartpole" / "torn.json.gz").write_bytes(b"\x1f\x8b not a whole record")
    figures, tables = tmp_path / "figures", tmp_path / "records.md"

    figure, page = write_study_pages(shac_root, paper_root, figures, tables, log=None)
    text = page.read_text()
    assert figure == figures / "recipes_study.png" and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    row = next(line for line in text.splitlines() if line.startswith("| cartpole | 2 poles | SHAC |"))
    assert "not run yet" in row and "| 3/-/0 |" in row  # R's three seeds, M not planned, no C yet
    assert "**cartpole, 2 poles**: not answered yet (no records of SHAC C)" in text
    assert "**repulsion, rc 0.001**: not answered yet (no records of paper loop C, SHAC R, SHAC C)" in text
    assert "Not counted: 1 record" in text  # the torn record is named as uncounted, never counted

    shac_c = _copy(RESULTS / "shac", shac_root, f"method=C_poles=2_{SHAC_RUN}=4?.json.gz")
    write_study_pages(shac_root, paper_root, figures, tables, log=None)
    text = tables.read_text()

    def finals(paths):  # the last finite test loss of each record, read independently of the study's code
        out = []
        for p in paths:
            record = json.loads(gzip.decompress(p.read_bytes()))
            column = record["columns"].index("test_loss")
            out.append([r[column] for r in record["rows"] if r[column] is not None][-1])
        return np.asarray(out)

    best = min(np.median(finals(shac_r)), np.median(finals(shac_c)))
    ratio = best / np.median(finals(paper_c))
    inside = np.median(finals(shac_c)) / np.median(finals(shac_r))
    lower = sum(c < r for c in finals(shac_c) for r in finals(shac_r))
    verdict = next(line for line in text.splitlines() if line.startswith("- **cartpole, 2 poles**"))
    assert f"{ratio:.3g} times its loss" in verdict
    assert ("does not beat" in verdict) == (ratio >= 1)
    assert f"its median is {inside:.3g} times R's ({lower} of 9 seed pairs lower)" in verdict
    assert verdict.endswith(
        "With episodes that end at the horizon, inside the window: not answered yet. With DiffRL's critic as well "
        "(its network, inputs standardised, learning rate decaying, minibatches in order): not answered yet."
    )
    assert "| cartpole | 2 poles | SHAC, DiffRL in full | not run yet | - | not run yet | 0/-/0 |" in text
    assert "| cartpole | 2 poles | SHAC, episodes of the horizon | not run yet | - | not run yet | 0/-/0 |" in text


def test_apgs_learning_rate_is_chosen_on_the_tuning_seed_and_only_the_reported_seeds_count():
    from stablebptt.experiments.report import RunRecord
    from stablebptt.experiments.study import _at_chosen_lr

    def record(lr, seed, final):
        config = {"task": "cartpole", "train": {"method": "R", "lr": lr, "seed": seed}}
        return RunRecord(f"lr={lr}_seed={seed}", config, "complete", [{"test_loss": 1.0}, {"test_loss": final}])

    # on the tuning seed 1e-3 ends lowest; on the reported seeds 1e-2 would have: it must not be chosen for that
    tuning = [record(1e-4, TUNE_SEED, 0.5), record(1e-3, TUNE_SEED, 0.1), record(1e-2, TUNE_SEED, math.nan)]
    reported = [record(lr, seed, {1e-4: 0.4, 1e-3: 0.3, 1e-2: 0.01}[lr]) for lr in APG_LRS for seed in SEEDS]
    chosen, note = _at_chosen_lr(tuning + reported)
    assert note == f"lr 0.001, chosen on seed {TUNE_SEED}"
    assert sorted(r.name for r in chosen) == [f"lr=0.001_seed={s}" for s in SEEDS]
    none, note = _at_chosen_lr(tuning[:2] + reported)
    assert none == [] and note == "learning rate: 2 tuning runs of 3 recorded"


def test_a_diverged_run_is_said_so_in_the_table_and_the_verdict():
    from stablebptt.experiments.report import RunRecord
    from stablebptt.experiments.study import Cell, study_table, verdicts

    config = {"task": "repulsion", "task_settings": {"rc": 0.001}, "train": {"protocol": "shac", "window": 32}}
    config["train"].update({"batch_size": 64, "n_train": 256, "epochs": 10})

    def record(status, losses):
        return RunRecord("r", config, status, [{"test_loss": x, "epoch_time": 1.0} for x in losses])

    fine, broke = record("complete", [3.0, 2.0]), record("diverged", [3.0, 14.0, math.nan])
    cells = [
        Cell("repulsion", 0.001, "paper loop", "R", [fine]),
        Cell("repulsion", 0.001, "paper loop", "C", [fine]),
        Cell("repulsion", 0.001, "SHAC", "R", [broke, fine]),
        Cell("repulsion", 0.001, "SHAC", "C", []),
    ]
    table = study_table(cells)
    assert "| 8 [2, 14] (1 diverged) | - | not run yet |" in table  # the median; a diverged run's last finite loss
    assert "| 8.19e+04 |" in table  # the steps a run plans: 10 epochs of 4 windows of 64 x 32 steps
    (line,) = verdicts(cells)
    assert "not answered yet (no records of SHAC C). SHAC with R diverged in 1 of 2 runs" in line
    # the figure's curves: the diverged run counts until it stopped, the others go on past it
    steps, curves = seed_curves([fine, broke, record("complete", [4.0, 3.0, 2.0, 1.0])])
    assert curves.shape == (3, 4) and list(steps) == [8192 * e for e in (1, 2, 3, 4)]
    np.testing.assert_array_equal(curves[0], [3.0, 2.0, np.nan, np.nan])
    np.testing.assert_array_equal(curves[1], [3.0, 14.0, np.nan, np.nan])
    assert np.nanmedian(curves[:, 3]) == 1.0  # the median at the last epoch is the one run that reached it


def test_a_brax_environment_is_answered_in_reward_per_step():
    """The Brax part's verdict: rewards (minus the test losses), SHAC's best rule against APG's recipe, and each
    other rule inside SHAC's windows against R with the seed pairs counted; a missing cell is named."""
    from stablebptt.experiments.report import RunRecord
    from stablebptt.experiments.study import APG, SHAC, Cell, study_table, verdicts

    config = {"task": "brax:hopper", "train": {"protocol": "shac", "window": 32, "batch_size": 16, "n_train": 256}}

    def records(*losses):
        return [RunRecord("r", config, "complete", [{"test_loss": x, "epoch_time": 1.0}]) for x in losses]

    cells = [
        Cell("brax:hopper", None, APG, "R", records(-0.5, -0.6, -0.4)),
        Cell("brax:hopper", None, SHAC, "R", records(-0.3, -0.2, -0.25)),
        Cell("brax:hopper", None, SHAC, "M", records(-0.1, -0.2, -0.15)),
        Cell("brax:hopper", None, SHAC, "C", records(-0.7, -0.2, -0.35)),
    ]
    (line,) = verdicts(cells)
    assert line.startswith("- **brax:hopper** (mean reward per step")
    # rewards: APG 0.5; SHAC R 0.25, M 0.15, C 0.35 (its best): SHAC does not beat APG's recipe
    assert "SHAC (best rule: C, 0.35) does not beat APG's recipe with R (0.5)" in line
    assert "against R's 0.25: M 0.15 (0 of 9 seed pairs above R); C 0.35 (6 of 9 seed pairs above R)" in line
    # one epoch per record here, so the best rule's first epoch is its last
    assert "SHAC trained to the end in 9 of 9 runs; its best rule went from 0.35 after the first epoch to 0.35." in line
    rising = [
        RunRecord("r", config, status, [{"test_loss": -0.1, "epoch_time": 1.0}, {"test_loss": x, "epoch_time": 1.0}])
        for x, status in ((-0.7, "complete"), (-0.2, "diverged"), (-0.35, "complete"))
    ]
    (line,) = verdicts([*cells[:3], Cell("brax:hopper", None, SHAC, "C", rising)])
    assert "SHAC trained to the end in 8 of 9 runs; its best rule went from 0.1 after the first epoch to 0.35." in line
    assert "SHAC (best rule: C, 0.35; 1 of its 3 runs diverged, each read at its last finite epoch) does not" in line
    assert "| brax:hopper | - | SHAC | -0.25 [-0.3, -0.2] | -0.15 [-0.2, -0.1] | -0.35 [-0.7, -0.2] |" in study_table(
        cells
    )
    (missing,) = verdicts([*cells[:3], Cell("brax:hopper", None, SHAC, "C", [])])
    assert missing == "- **brax:hopper**: not answered yet (no records of SHAC C)."


def test_the_recipes_regret_counts_every_recipe_and_the_paper_loop_in_each_cell():
    """The study's "which to use" rows: per cell (level, reported seed) the best run of every recipe and of the
    paper's loop; each choice's final loss is its own record's (read here from the files), the tuning seed and
    the APG rates not chosen are left out."""
    from stablebptt.experiments.evidence import regrets
    from stablebptt.experiments.study import study_regrets

    cells, choices = study_regrets(RESULTS / "shac", RESULTS / "paper")
    assert {c.seed for c in cells} <= set(SEEDS) and {c.task for c in cells} <= set(PAPER_TASKS)
    labels = [c.label for c in choices]
    assert labels[:4] == ["paper loop, R", "paper loop, C", "SHAC, R", "SHAC, C"]

    def final(path):  # the last finite test loss, read independently of the study's code
        record = json.loads(gzip.decompress(path.read_bytes()))
        column = record["columns"].index("test_loss")
        return [r[column] for r in record["rows"] if r[column] is not None][-1]

    cell = next(c for c in cells if (c.task, c.level, c.seed) == ("cartpole", 2, 43))
    paper_c = final(RESULTS / "paper/cartpole/method=C_poles=2_clip=none_seed=43.json.gz")
    shac_c = final(next((RESULTS / "shac/cartpole").glob(f"method=C_poles=2_{SHAC_RUN}=43.json.gz")))
    assert choices[1].final(cell) == pytest.approx(paper_c, rel=1e-6)
    assert choices[3].final(cell) == pytest.approx(shac_c, rel=1e-6)
    assert cell.best <= min(paper_c, shac_c)
    assert all(o.record.settings().get("seed") != TUNE_SEED for c in cells for o in c.runs)
    (_, shac_regret), *_ = [(c, r) for c, r in regrets(cells, choices[3]) if c is cell]
    assert shac_regret == pytest.approx(shac_c / cell.best, rel=1e-6)


def _doc_commands(page: str) -> list[list[str]]:
    """The ``stablebptt train`` commands of the fenced bash blocks of `page`, continuation lines joined."""
    import re
    import shlex

    text = (Path(__file__).resolve().parents[2] / page).read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    commands = [" ".join(line.rstrip("\\").strip() for line in b.strip().splitlines()) for b in blocks]
    return [shlex.split(c)[1:] for c in commands if c.startswith("stablebptt train ")]


def _stage_config(key: str, **cell):
    (stage,) = [s for s in STUDY_STAGES if s.key == key]
    found = [
        r.config
        for r in stage.runs()
        if all(getattr(r.config.train, k, r.config.task_settings.get(k)) == v for k, v in cell.items())
    ]
    assert found, (key, cell)
    return found[0]


@pytest.mark.parametrize(
    ("index", "stage", "cell"),
    [
        (0, "shac-cartpole", {"method": "C", "n_poles": 4}),
        (1, "shac-episodes-cartpole", {"method": "C", "n_poles": 4}),
        pytest.param(2, "shac-brax-hopper", {"method": "C"}, marks=pytest.mark.slow),  # builds Brax's hopper
    ],
)
def test_the_one_cell_commands_of_the_recipes_page_train_the_studys_run(index, stage, cell):
    """docs/recipes.md, "Rerun it": each one-cell command, given seed 45, is the stage's run of that cell with
    seed 45 and nothing else changed (every training setting, the task and its settings), so that a rerun of a
    cell with a seed of one's choice is the study's recipe."""
    from stablebptt.cli.commands import _config, build_parser, parse

    argv = _doc_commands("docs/recipes.md")[index]
    ours = _config(parse(build_parser(), argv))
    want = _stage_config(stage, **cell)
    assert ours.task == want.task and ours.task_settings == want.task_settings
    assert ours.train == want.train.replace(seed=45)


def test_shacs_variants_are_answered_against_the_recipe_they_vary_and_the_papers_c():
    """At a level with stages of SHAC's variants, the verdict says each variant's better rule, its median over the
    best of the recipe it varies and over the paper's C: episodes that end at the horizon against the first stages'
    SHAC, DiffRL in full (its critic too) against SHAC with the plain critic on those episodes."""
    from stablebptt.experiments.report import RunRecord
    from stablebptt.experiments.study import PAPER_LOOP, SHAC, SHAC_CRITIC, SHAC_EPISODES, Cell, verdicts

    config = {"task": "cartpole", "task_settings": {"n_poles": 2}, "train": {"protocol": "shac", "window": 32}}
    config["train"].update({"batch_size": 64, "n_train": 256, "epochs": 10})

    def cell(recipe, method, *finals):
        records = [RunRecord("r", config, "complete", [{"test_loss": x, "epoch_time": 1.0}]) for x in finals]
        return Cell("cartpole", 2, recipe, method, records)

    cells = [
        cell(PAPER_LOOP, "R", 0.4, 0.5, 0.6),
        cell(PAPER_LOOP, "C", 0.01, 0.02, 0.03),
        cell(SHAC, "R", 0.5, 0.6, 0.7),
        cell(SHAC, "C", 0.3, 0.4, 0.5),
        cell(SHAC_CRITIC, "R", 0.2, 0.3),
        cell(SHAC_CRITIC, "C", 0.25, 0.35, 0.45),
        cell(SHAC_EPISODES, "R", 0.06, 0.08, 0.1),
        cell(SHAC_EPISODES, "C"),
    ]
    (line,) = verdicts(cells)
    assert "With episodes that end at the horizon, inside the window: not answered yet." in line
    assert line.endswith(
        "minibatches in order), SHAC's better rule is R (median 0.25): the plain critic's best not recorded yet and "
        "12.5 times the paper's C."
    )
    cells[-1] = cell(SHAC_EPISODES, "C", 0.05, 0.06, 0.07)
    (line,) = verdicts(cells)
    assert (
        "With episodes that end at the horizon, inside the window, SHAC's better rule is C (median 0.06): 0.15 "
        "times the first stages' best and 3 times the paper's C." in line
    )
    assert line.endswith(
        "SHAC's better rule is R (median 0.25): 4.17 times the plain critic's best and 12.5 times the paper's C."
    )
    cells[4:6] = [cell(SHAC_CRITIC, "R"), cell(SHAC_CRITIC, "C")]
    (line,) = verdicts(cells)
    assert line.endswith(
        "(its network, inputs standardised, learning rate decaying, minibatches in order): not answered yet."
    )


def test_a_run_of_diffrl_in_full_is_reported_as_its_own_recipe():
    """The stage `shac-critic` trains DiffRL's critic and episodes of the horizon; its runs count as "SHAC, DiffRL
    in full", never as episodes of the horizon with the plain critic, nor the other way round."""
    from stablebptt.experiments.report import RunRecord
    from stablebptt.experiments.study import SHAC, SHAC_CRITIC, SHAC_EPISODES, STUDY_STAGES, _recipe_of

    def recipe(stage: str) -> set[str]:
        (found,) = [s for s in STUDY_STAGES if s.key == stage]
        return {_recipe_of(RunRecord("r", r.config.to_json(), "complete", [])) for r in found.runs()}

    assert recipe("shac-critic") == {SHAC_CRITIC}
    assert recipe("shac-episodes-cartpole") == {SHAC_EPISODES}
    assert recipe("shac-cartpole") == {SHAC}
    (critic,) = [s for s in STUDY_STAGES if s.key == "shac-critic"]
    assert {r.config.train.episode_restart for r in critic.runs()} == {"step"}
    assert {r.config.train.critic_network for r in critic.runs()} == {"diffrl"}
