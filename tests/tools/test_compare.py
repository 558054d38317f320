"""ampl_jax.lab.compare: variants side by side, last-k per seed then mean +- std, model fits."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ampl_jax.lab import compare


def _run(folder, dtype, rows, fits):
    """rows: [(seed, step, score, q)]; fits: [(seed, step, holdout_losses, elites, epochs)]."""
    os.makedirs(folder)
    config = {"seed": 0, "num_seeds": 2, "method": "ampl", "dataset": {"id": "ampl/hopper/medium-v0"},
              "compute": {"dtype": dtype}}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(folder, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", "step", "normalized_score", "q_mean"])
        w.writerows(rows)
    with open(os.path.join(folder, "model_fits.jsonl"), "w") as f:
        for seed, step, losses, elites, epochs in fits:
            f.write(json.dumps({"seed": seed, "step": step, "holdout_losses": losses, "elites": elites,
                                "epochs": epochs}) + "\n")


@pytest.fixture
def runs(tmp_path):
    # float32: seed 0 scores 10, 20, 30; seed 1 scores 40, 50, 60 at steps 1..3.
    _run(tmp_path / "f32", "float32",
         [(0, 1, 10, 1.0), (0, 2, 20, 2.0), (0, 3, 30, 3.0), (1, 1, 40, 4.0), (1, 2, 50, 5.0), (1, 3, 60, 6.0)],
         [(0, 0, [1.0, 2.0, 9.0], [0, 1], 15), (1, 0, [3.0, 9.0, 5.0], [0, 2], 12)])
    _run(tmp_path / "bf16", "bfloat16",
         [(0, 1, 0, 0.5), (0, 3, 100, 0.5), (1, 1, 0, 0.5), (1, 3, 80, 0.5)],
         [(0, 0, [2.0, 2.0, 2.0], [0, 1], 15), (1, 0, [2.0, 2.0, 2.0], [1, 2], 15)])
    return tmp_path


def _cells(text, quantity):
    row = next(line for line in text.splitlines() if line.startswith(f"| {quantity} |"))
    return [c.strip() for c in row.strip("|").split("|")[1:]]


def test_last_k_per_seed_then_mean_and_std(runs):
    text = compare.compare(str(runs), ["normalized_score", "q_mean", "no_such_column"], last_k=2)
    header = _cells(text, "quantity")
    assert header == ["ampl: compute.dtype=bfloat16", "ampl: compute.dtype=float32"]
    # bf16: seed means of the last 2 evaluations 50 and 40; f32: 25 and 55.
    assert _cells(text, "normalized_score") == [f"45.0 ± {np.std([50, 40], ddof=1):.1f}",
                                                 f"40.0 ± {np.std([25, 55], ddof=1):.1f}"]
    assert _cells(text, "q_mean") == ["0.500 ± 0.000", f"4.000 ± {np.std([2.5, 5.5], ddof=1):.3f}"]
    assert "no_such_column" not in text
    # Elite holdout losses: f32 seeds mean(1, 2) = 1.5 and mean(3, 5) = 4; bf16 2 and 2.
    assert _cells(text, "model fit at 0: elite holdout loss") == [
        "2.000 ± 0.000", f"2.750 ± {np.std([1.5, 4.0], ddof=1):.3f}"]
    assert _cells(text, "model fit at 0: epochs") == ["15.0 ± 0.0", f"13.5 ± {np.std([15, 12], ddof=1):.1f}"]


def test_cli_writes_the_file_and_fails_in_one_line(runs, tmp_path):
    out = tmp_path / "cmp.md"
    ok = subprocess.run([sys.executable, "-m", "ampl_jax.lab.compare", str(runs), "--last_k=1",
                         f"--out_file={out}"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert out.read_text().strip() == ok.stdout.strip()
    assert "| normalized_score | 90.0 ± 14.1 | 45.0 ± 21.2 |" in ok.stdout
    # Several folders: the union of their runs (here the same two runs, named one folder each).
    two = subprocess.run([sys.executable, "-m", "ampl_jax.lab.compare", str(runs / "bf16"), str(runs / "f32"),
                          "--last_k=1"], capture_output=True, text=True)
    assert two.returncode == 0 and two.stdout.strip() == ok.stdout.strip(), two.stderr
    bad = subprocess.run([sys.executable, "-m", "ampl_jax.lab.compare", str(tmp_path / "empty")],
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].startswith("error: no run folders")
