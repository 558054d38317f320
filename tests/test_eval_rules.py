"""ampl_jax.eval_rules: a saved AMPL policy under several action-selection rules."""

import math
import subprocess
import sys

import pytest

from ampl_jax import eval_rules
from tests import runs


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return runs.session_dirs(tmp_path_factory)


def test_rules_share_episodes_and_keys(ref, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ref["minari"]))
    rows = eval_rules.evaluate_rules(str(ref["ref"]), steps=[40], episodes=2, num_action_samples=1)
    assert [(r["step"], r["rule"]) for r in rows] == [(40, rule) for rule in eval_rules.RULES]
    assert all(math.isfinite(r["return_mean"]) and r["mean_length"] >= 1 for r in rows)
    by_rule = {r["rule"]: r for r in rows}
    # N = 1: the best of one sample is that sample, drawn with the same key on the same episodes.
    assert by_rule["best_of_n"]["return_mean"] == by_rule["one_sample"]["return_mean"]
    # Zero noise is deterministic: the same return again.
    again = eval_rules.evaluate_rules(str(ref["ref"]), steps=[40], rules=["zero_noise"], episodes=2)
    assert again[0]["return_mean"] == by_rule["zero_noise"]["return_mean"]


def test_missing_step_is_a_one_line_error(ref):
    proc = subprocess.run([sys.executable, "-m", "ampl_jax.eval_rules", str(ref["ref"]), "--steps=7"],
                          cwd=runs.ROOT, env=runs.env(ref["minari"]), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == f"error: no checkpoint at step(s) [7] in {ref['ref']} (saved: [36, 40])"


def test_one_sample_columns_in_metrics(ref, tmp_path):
    """eval.one_sample_too logs the actor's own sample on the same episodes; with N = 1 the
    paper's best-of-N rule is that same sample, so both columns agree exactly."""
    workdir = tmp_path / "w"
    proc = runs.main(["--config=tests/tiny_config.py", "--noprogress", "--config.train.total_steps=8",
                      "--config.eval.one_sample_too=True", "--config.eval.num_action_samples=1",
                      f"--workdir={workdir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    import csv
    rows = list(csv.DictReader(open(workdir / "metrics.csv")))
    assert rows
    for r in rows:
        assert r["one_sample_return_mean"] == r["return_mean"]
        assert r["one_sample_normalized_score"] == r["normalized_score"]
        assert r["one_sample_d4rl_normalized_score"] == r["d4rl_normalized_score"]
