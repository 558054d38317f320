"""ampl_jax.report on hand-written run folders: hand-computed mean/std (final and last-k), files, errors."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from ampl_jax import report
from tests.runs import ROOT as REPO_ROOT

ROOT = str(REPO_ROOT)  # the repository (tests/runs.py)


def _write_run(folder, dataset, horizon, rows, seed=0, num_seeds=1, seed_column=False, trained_on=None, **sections):
    """rows: [(step, score)] or, with seed_column, [(seed, step, score)]; trained_on: summary's dataset_id.

    sections: more config entries, e.g. method="bc" or miw={"schedule": "none"} (no `method`: an old AMPL run).
    """
    os.makedirs(folder, exist_ok=True)
    config = {"seed": seed, "num_seeds": num_seeds, "dataset": {"id": dataset, "download": False},
              "rollout": {"horizon": horizon}, "model": {"hidden_dims": [8, 8]}, **sections}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(folder, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "seed", "return_mean", "normalized_score", "critic_loss"] if seed_column
                   else ["step", "return_mean", "normalized_score", "critic_loss"])
        for r in rows:
            if seed_column:
                s, step, score = r
                w.writerow([step, s, 10 * score, score, 0.5])
            else:
                step, score = r
                w.writerow([step, 10 * score, score, 0.5])
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump({"dataset_id": trained_on or dataset, "seed": seed}, f)


@pytest.fixture
def runs_dir(tmp_path):
    """Dataset a: horizon 1 (3 folders, one seed each) and horizon 3 (one folder, `seed` column, 2 seeds);
    dataset b: one seed with a single evaluation."""
    r = tmp_path / "runs"
    scores = {0: [10, 20, 30], 1: [20, 30, 50], 2: [30, 40, 40]}
    for seed, ys in scores.items():
        _write_run(r / "a" / "h1" / f"seed{seed}", "ampl/a-v0", 1, list(zip([10, 20, 30], ys)), seed=seed)
    vm = [(0, 10, 0), (1, 10, 10), (0, 20, 50), (1, 20, 70), (0, 30, 60), (1, 30, 80)]
    _write_run(r / "a" / "h3-vmapped", "ampl/a-v0", 3, vm, num_seeds=2, seed_column=True)
    _write_run(r / "b" / "seed5", "ampl/b-v0", 1, [(20, 42)], seed=5)
    (r / "a" / "h1" / "seed0" / "tensorboard").mkdir()
    (r / "notarun").mkdir()  # no metrics.csv: ignored
    return r


def test_final_and_last_k_mean_std_by_hand(runs_dir, tmp_path):
    out = tmp_path / "out"
    result = report.make_report(str(runs_dir), str(out), last_k=2)
    stats = {(s.dataset, s.variant): s for s in result["stats"]}
    # no config.method: AMPL runs; two horizons, one config each: a tie, so both name their horizon
    assert list(stats) == [("ampl/a-v0", "ampl: rollout.horizon=1"), ("ampl/a-v0", "ampl: rollout.horizon=3"),
                           ("ampl/b-v0", "ampl")]
    h1 = stats["ampl/a-v0", "ampl: rollout.horizon=1"]
    # final [30, 50, 40]: mean 40, sample std sqrt((100 + 100 + 0) / 2) = 10
    assert h1.seeds == [0, 1, 2] and (h1.steps_min, h1.steps_max) == (30, 30)
    assert h1.final_mean == pytest.approx(40.0) and h1.final_std == pytest.approx(10.0)
    # last-2 per seed [25, 40, 40]: mean 35, sample std sqrt((100 + 25 + 25) / 2) = sqrt(75)
    assert h1.last_k_mean == pytest.approx(35.0) and h1.last_k_std == pytest.approx(math.sqrt(75))
    h3 = stats["ampl/a-v0", "ampl: rollout.horizon=3"]  # two seeds from one folder's `seed` column
    assert h3.seeds == [0, 1]
    assert h3.final_mean == pytest.approx(70.0) and h3.final_std == pytest.approx(math.sqrt(200))
    assert h3.last_k_mean == pytest.approx(65.0) and h3.last_k_std == pytest.approx(math.sqrt(200))
    b = stats["ampl/b-v0", "ampl"]  # one seed, one evaluation: std undefined (nan), last-k uses what exists
    assert b.final_mean == 42.0 and math.isnan(b.final_std) and b.last_k_mean == 42.0 and math.isnan(b.last_k_std)

    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [(r["dataset"], r["variant"], r["num_seeds"], r["seeds"]) for r in rows] == [
        ("ampl/a-v0", "ampl: rollout.horizon=1", "3", "0 1 2"), ("ampl/a-v0", "ampl: rollout.horizon=3", "2", "0 1"),
        ("ampl/b-v0", "ampl", "1", "5")]
    assert float(rows[0]["final_mean"]) == 40.0 and float(rows[0]["last_k_std"]) == pytest.approx(8.660254)
    assert rows[0]["last_k"] == "2" and math.isnan(float(rows[2]["final_std"]))

    md = (out / "report.md").read_text()
    assert ("| final score (dataset scale) | last-2 avg score (dataset scale) | final score (D4RL v2 scale) | "
            "last-2 avg score (D4RL v2 scale) |") in md
    assert "| ampl/a-v0 | ampl: rollout.horizon=1 | 3 | 30 | 40.0 ± 10.0 | 35.0 ± 8.7 |" in md
    assert "| ampl/b-v0 | ampl | 1 | 20 | 42.0 ± n/a | 42.0 ± n/a |" in md
    assert "sample std (ddof=1)" in md
    for name in ("curves_ampl_a-v0.png", "curves_ampl_b-v0.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variants_are_named_within_their_method(tmp_path):
    """The CPU-scale grid: AMPL, NW, a refit variant, BC and TD3+BC (each config written in full).

    BC and TD3+BC carry AMPL's keys at AMPL's defaults, so they never name a variant; within AMPL
    only the keys that differ among its runs do, and only where a run departs from the value most
    AMPL runs share. Two configs that tie on a key both name it.
    """
    r = tmp_path / "runs"

    def run(name, method, schedule="interleaved", retrain=20, horizon=1, seed=0):
        _write_run(r / name, "ampl/hopper/medium-v0", horizon, [(10, 1.0 + seed)], seed=seed, method=method,
                   miw={"schedule": schedule}, train={"model_retrain_epochs": retrain})

    run("ampl", "ampl")
    run("ampl-s1", "ampl", seed=1)  # a second seed of the same config
    run("nw", "ampl", schedule="none")
    run("refit4", "ampl", retrain=4)
    run("bc", "bc")
    run("td3bc", "td3bc")
    curves = [c for p in report.find_runs(str(r)) for c in report.load_run(p)]
    labels = report.assign_variants(curves)
    # the reference first, then by the values of the differing keys (miw.schedule: "interleaved" < "none")
    assert labels == ["ampl", "ampl: train.model_retrain_epochs=4", "ampl: miw.schedule=none", "bc", "td3bc"]
    assert {os.path.basename(c.path): c.variant for c in curves} == {
        "ampl": "ampl", "ampl-s1": "ampl", "nw": "ampl: miw.schedule=none",
        "refit4": "ampl: train.model_retrain_epochs=4", "bc": "bc", "td3bc": "td3bc"}

    # two BC configs, one each: a tie, so both are named by the key that tells them apart
    run("bc-h3", "bc", horizon=3)
    curves = [c for p in report.find_runs(str(r)) for c in report.load_run(p)]
    labels = report.assign_variants(curves)
    assert labels[3:] == ["bc: rollout.horizon=1", "bc: rollout.horizon=3", "td3bc"]
    result = report.make_report(str(r), str(tmp_path / "out"))
    assert [s.variant for s in result["stats"]] == labels
    assert "| ampl/hopper/medium-v0 | ampl | 2 | 10 | 1.5 ± 0.7 |" in result["markdown"]


def test_steps_range_and_metric_choice(tmp_path):
    r = tmp_path / "runs"
    _write_run(r / "s0", "d", 1, [(10, 1.0), (20, 3.0)], seed=0)
    _write_run(r / "s1", "d", 1, [(10, 2.0)], seed=1)
    result = report.make_report(str(r), last_k=5, metric="return_mean")
    (s,) = result["stats"]
    assert (s.steps_min, s.steps_max) == (10, 20)
    assert s.final_mean == pytest.approx(25.0)  # returns are 10x the scores: finals 30 and 20
    assert s.last_k_mean == pytest.approx(20.0)  # per-seed means 20 and 20
    assert "| d | ampl | 2 | 10-20 |" in result["markdown"]
    assert os.path.exists(r / "report.md") and os.path.exists(r / "curves_d.png")  # --out defaults to RUNS_DIR


def test_runs_are_grouped_by_the_data_they_trained_on(tmp_path):
    """An official id that fell back to a local dataset is reported under the local one."""
    _write_run(tmp_path / "a", "mujoco/hopper/medium-v0", 1, [(1, 10.0)], trained_on="ampl/hopper/medium-v0")
    _write_run(tmp_path / "b", "mujoco/hopper/medium-v0", 1, [(1, 30.0)], seed=1, trained_on="ampl/hopper/medium-v0")
    curves = [c for p in report.find_runs(str(tmp_path)) for c in report.load_run(p)]
    assert {c.dataset for c in curves} == {"ampl/hopper/medium-v0"}


def test_mean_curve_bands():
    a = report.SeedCurve("p", "d", 0, {}, np.array([10, 20]), np.array([1.0, 3.0]))
    b = report.SeedCurve("p", "d", 1, {}, np.array([10, 20, 30]), np.array([3.0, 5.0, 9.0]))
    steps, mean, low, high = report.mean_curve([a, b], "std")
    assert steps.tolist() == [10, 20, 30] and mean.tolist() == [2.0, 4.0, 9.0]
    assert low[0] == pytest.approx(2 - math.sqrt(2)) and math.isnan(low[2])  # one seed at step 30: no band
    _, _, low, high = report.mean_curve([a, b], "minmax")
    assert low.tolist() == [1.0, 3.0, 9.0] and high.tolist() == [3.0, 5.0, 9.0]


def _report_cli(*args):
    return subprocess.run([sys.executable, "-m", "ampl_jax.report", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, MPLBACKEND="Agg"))


def test_cli_writes_files_and_errors_in_one_line(runs_dir, tmp_path):
    proc = _report_cli(str(runs_dir), "--last_k=2", f"--out={tmp_path / 'o'}")
    assert proc.returncode == 0, proc.stderr
    assert "35.0 ± 8.7" in proc.stdout and "report.csv" in proc.stdout
    assert {"report.md", "report.csv", "curves_ampl_a-v0.png", "curves_ampl_b-v0.png"} <= set(os.listdir(tmp_path / "o"))
    (tmp_path / "empty").mkdir()
    proc = _report_cli(str(tmp_path / "empty"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: no runs under {tmp_path / 'empty'} (a run folder holds metrics.csv and config.json)"]


def test_both_score_scales_in_tables(tmp_path):
    """A D4RL-scale column beside the dataset scale; older runs without it derive it from return_mean."""
    r = tmp_path / "runs"
    new = r / "new"
    _write_run(new, "ampl/hopper/medium-v0", 1, [(10, 40.0), (20, 60.0)], seed=0)
    with open(new / "metrics.csv") as f:
        lines = f.read().splitlines()
    d4rl = {"10": 20.0, "20": 30.0}
    lines = [lines[0] + ",d4rl_normalized_score"] + [f"{x},{d4rl[x.split(',')[0]]}" for x in lines[1:]]
    (new / "metrics.csv").write_text("\n".join(lines) + "\n")
    # Written before the column existed: returns 10x the scores, so 400 and 600 at the two steps.
    _write_run(r / "old", "ampl/hopper/medium-v0", 1, [(10, 40.0), (20, 60.0)], seed=1)
    _write_run(r / "pendulum", "ampl/invertedpendulum/random-v0", 1, [(10, 5.0)], seed=0)

    result = report.make_report(str(r), str(tmp_path / "out"), last_k=2)
    (hop, ip) = result["stats"]
    (hop4, ip4) = result["d4rl_stats"]
    assert hop.dataset == hop4.dataset == "ampl/hopper/medium-v0" and hop.seeds == hop4.seeds == [0, 1]
    assert hop.final_mean == pytest.approx(60.0)  # the dataset scale is untouched
    old_final = 100 * (600 + 20.272305) / (3234.3 + 20.272305)
    assert hop4.final_mean == pytest.approx((30.0 + old_final) / 2)
    old_last2 = 100 * (500 + 20.272305) / (3234.3 + 20.272305)
    assert hop4.last_k_mean == pytest.approx((25.0 + old_last2) / 2)
    assert math.isnan(ip4.final_mean) and ip.final_mean == 5.0  # D4RL never scored InvertedPendulum

    md = result["markdown"]
    assert f"| ampl/hopper/medium-v0 | ampl | 2 | 20 | 60.0 ± 0.0 | 50.0 ± 0.0 | {hop4.final_mean:.1f} ± " in md
    assert "score (dataset scale)" in md and "score (D4RL v2 scale)" in md
    assert "v5" in md and "v2" in md and "approximate" in md
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert list(rows[0])[: len(report.CSV_COLUMNS) - 4] == list(report.CSV_COLUMNS[:-4])  # old columns first
    assert float(rows[0]["final_mean"]) == 60.0
    assert float(rows[0]["d4rl_final_mean"]) == pytest.approx(hop4.final_mean)

    other = report.make_report(str(r), str(tmp_path / "o2"), metric="return_mean")
    assert other["d4rl_stats"] is None and "D4RL" not in other["markdown"]
    assert all(row["d4rl_final_mean"] == "" for row in csv.DictReader(open(tmp_path / "o2" / "report.csv")))


def _add_columns(folder, columns):
    """Append columns {name: {step: value}} to a run's metrics.csv."""
    lines = (folder / "metrics.csv").read_text().splitlines()
    names = list(columns)
    lines = [lines[0] + "".join("," + n for n in names)] + [
        x + "".join(f",{columns[n][x.split(',')[0]]}" for n in names) for x in lines[1:]]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_one_sample_table(tmp_path):
    """--metric=one_sample_normalized_score: AMPL's one-sample columns on both scales; BC (one
    evaluation rule) shows its only score; an AMPL run without the columns is an error, not a
    silent substitute."""
    r = tmp_path / "runs"
    ampl = r / "ampl"
    _write_run(ampl, "ampl/hopper/medium-v0", 1, [(10, 2.0), (20, 1.0)], seed=0, method="ampl")
    _add_columns(ampl, {"d4rl_normalized_score": {"10": 1.0, "20": 0.5},
                        "one_sample_normalized_score": {"10": 30.0, "20": 50.0},
                        "one_sample_d4rl_normalized_score": {"10": 15.0, "20": 25.0}})
    bc = r / "bc"
    _write_run(bc, "ampl/hopper/medium-v0", 1, [(10, 60.0), (20, 64.0)], seed=0, method="bc")
    _add_columns(bc, {"d4rl_normalized_score": {"10": 30.0, "20": 32.0}})

    paper = report.make_report(str(r), str(tmp_path / "p"), last_k=2)
    one = report.make_report(str(r), str(tmp_path / "o"), last_k=2, metric="one_sample_normalized_score")
    by = {s.variant: s for s in one["stats"]}
    by4 = {s.variant: s for s in one["d4rl_stats"]}
    assert by["ampl"].final_mean == 50.0 and by["ampl"].last_k_mean == 40.0
    assert by4["ampl"].final_mean == 25.0 and by4["ampl"].last_k_mean == 20.0
    assert {s.variant: s.final_mean for s in paper["stats"]}["ampl"] == 1.0  # the paper's rule untouched
    assert by["bc"].final_mean == 64.0 and by4["bc"].final_mean == 32.0
    md = one["markdown"]
    assert "one-sample score (dataset scale)" in md and "one-sample score (D4RL v2 scale)" in md
    assert "no best-of-N choice" in md and "one-sample" not in paper["markdown"]

    old = r / "old_ampl"
    _write_run(old, "ampl/hopper/medium-v0", 1, [(10, 2.0)], seed=1, method="ampl")
    with pytest.raises(report.ReportError, match="one_sample_normalized_score"):
        report.make_report(str(r), str(tmp_path / "o2"), metric="one_sample_normalized_score")
