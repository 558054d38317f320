"""ampl_jax.lab.eval_rules: a saved AMPL policy under several action-selection rules."""

import math
import subprocess
import sys

import pytest

from ampl_jax.lab import eval_rules
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
    for stat in ("action_abs_mean", "action_saturated", "q_min_mean"):  # the same actions at the same states
        assert by_rule["best_of_n"][stat] == by_rule["one_sample"][stat]
    for r in rows:
        assert 0.0 <= r["action_saturated"] <= 1.0 and 0.0 < r["action_abs_mean"] <= 1.0
        assert math.isfinite(r["q_min_mean"])
    # Zero noise is deterministic: the same return again.
    again = eval_rules.evaluate_rules(str(ref["ref"]), steps=[40], rules=["zero_noise"], episodes=2)
    assert again[0]["return_mean"] == by_rule["zero_noise"]["return_mean"]


def test_best_of_n_replays_the_logged_evaluation(ref, monkeypatch):
    """Issue #31 N8: eval_rules draws the training loop's own episodes and action keys, so the run's
    rule (its N, its episodes) at a saved step gives exactly the score metrics.csv logged there."""
    import csv

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ref["minari"]))
    logged = {int(r["step"]): float(r["return_mean"]) for r in csv.DictReader(open(ref["ref"] / "metrics.csv"))}
    rows = eval_rules.evaluate_rules(str(ref["ref"]), steps=[40], rules=["best_of_n"], episodes=2)
    assert rows[0]["return_mean"] == logged[40]


def test_missing_step_is_a_one_line_error(ref):
    proc = subprocess.run([sys.executable, "-m", "ampl_jax.lab.eval_rules", str(ref["ref"]), "--steps=7"],
                          cwd=runs.ROOT, env=runs.env(ref["minari"]), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == f"error: no checkpoint at step(s) [7] in {ref['ref']} (saved: [36, 40])"


@pytest.mark.slow
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


def test_action_stats_by_hand():
    """Mean |a|, the saturated fraction (|a| > 0.99) and the mean of min(Q1, Q2), on hand-made actions."""
    import types

    import jax.numpy as jnp
    import numpy as np

    critic = types.SimpleNamespace(apply=lambda params, obs, act: jnp.stack([act.sum(-1), act.sum(-1) + params]))
    agent = types.SimpleNamespace(critic=critic)
    obs = np.zeros((2, 3), np.float32)
    act = np.array([[1.0, -0.5], [0.995, 0.0]], np.float32)
    stats = eval_rules.action_stats(agent, 1.0, (obs, act, obs))  # Q2 = Q1 + 1, so min is Q1 = sum(a)
    assert stats["action_abs_mean"] == pytest.approx((1.0 + 0.5 + 0.995 + 0.0) / 4)
    assert stats["action_saturated"] == 0.5
    assert stats["q_min_mean"] == pytest.approx((0.5 + 0.995) / 2)
    stats = eval_rules.action_stats(agent, -1.0, (obs, act, obs))  # now Q2 is the smaller
    assert stats["q_min_mean"] == pytest.approx((0.5 + 0.995) / 2 - 1.0)
