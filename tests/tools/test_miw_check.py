"""`python -m ampl_jax.lab.miw_check`: the ground-truth machinery, and the command end to end at tiny sizes.

- the ratio classifier recovers a known density ratio (2-D Gaussians, weighted samples), and
  gives w = 1 when the two samples come from one distribution;
- the discounted-occupancy sampler weights, cuts and counts episodes as documented;
- Spearman's correlation agrees with scipy's (ties included);
- the snapshot mixture actor is the snapshot's own tanh-Gaussian policy;
- `run_estimator` hands AMPL's donating MIW phase copies (one state serves every estimator);
- bad options fail in one line before anything is made; the committed result has the documented
  JSON fields; the whole pipeline at tiny sizes writes them (a slow test, `python -m pytest -m slow`:
  about a minute, all of it compiling AMPL's programs).
The real check (Hopper, 30k rows, six estimators) is the command itself: about 20 min of CPU.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import subprocess
import sys
import types

import flax
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax.lab.miw_check import OptionError, classifier, correlation, occupancy, report
from ampl_jax.lab.miw_check.config import validate
from ampl_jax.lab.miw_check.estimators import run_estimator
from ampl_jax.lab.miw_check.policies import PolicySpec, SnapshotMixture, snapshot_params
from tests.runs import ROOT as REPO_ROOT


def _log_gauss(x, mean, std):
    return -0.5 * np.sum(((x - mean) / std) ** 2, axis=1) - x.shape[1] * np.log(std)


def test_classifier_recovers_a_known_ratio_with_weighted_samples():
    """pi = 0.75 N(a, 0.7^2) + 0.25 N(b, 0.7^2), given as equal counts of each component with weights
    3 : 1; data N(0, 1). The classifier's ratio on the data rows against the analytic one."""
    rng = np.random.default_rng(0)
    n = 6000
    a, b = np.array([1.0, 0.5]), np.array([-1.0, 0.0])
    x_pi = np.concatenate([a + 0.7 * rng.normal(size=(n // 2, 2)), b + 0.7 * rng.normal(size=(n // 2, 2))])
    w_pi = np.concatenate([np.full(n // 2, 3.0), np.full(n // 2, 1.0)])
    x_d = rng.normal(size=(n, 2))
    true = (0.75 * np.exp(_log_gauss(x_d, a, 0.7)) + 0.25 * np.exp(_log_gauss(x_d, b, 0.7))) / np.exp(
        _log_gauss(x_d, 0.0, 1.0))
    w, info = classifier.cross_fit_ratio(jax.random.PRNGKey(0), x_pi, w_pi, x_d, hidden=(32, 32), mass=0.5,
                                         max_epochs=20, patience=5)
    m = correlation.compare(w, true)
    # measured: Pearson 0.89, Spearman 0.96, MAE of w / E[w] 0.19; a classifier that ignores the
    # 3 : 1 weights reaches 0.76, 0.83 and 0.44 (the analytic ratio of the unweighted mixture: 0.81, 0.84, 0.43)
    assert m["pearson"] > 0.8, m
    assert m["spearman"] > 0.9, m
    assert m["mae_normalised"] < 0.3, m
    assert abs(np.mean(w) / 0.5 - 1.0) < 0.15  # `mass` scales the ratio: E_D[w] = mass
    assert info["holdout_log_loss"] < info["chance_log_loss"] - 0.05
    assert abs(info["mean_ratio_on_data"] - 1.0) < 0.15


def test_classifier_gives_one_for_identical_samples():
    """Same distribution, unequal counts and weights that do not depend on x: w = 1 (a wrong prior
    correction or weighting would show as E_D[w] != 1)."""
    rng = np.random.default_rng(1)
    x_pi, x_d = rng.normal(size=(2500, 3)), rng.normal(size=(5000, 3))
    w_pi = rng.uniform(0.1, 1.0, 2500)
    w, info = classifier.cross_fit_ratio(jax.random.PRNGKey(1), x_pi, w_pi, x_d, hidden=(32, 32), max_epochs=20,
                                         patience=5)
    assert abs(np.mean(w) - 1.0) < 0.1  # class totals of 1000 effective samples per fold: +-3 % each
    assert np.mean(np.abs(w - 1.0)) < 0.25
    assert info["holdout_accuracy"] < 0.56


class _FallingEnv:
    """1-D toy env: the state counts steps; episode seeded s falls after s % 4 + 2 steps."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def reset(self, seed):
        self.t, self.fall = 0, seed % 4 + 2
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t, np.float32), 1.0, self.t >= self.fall, False, {}

    def close(self):
        pass


def test_occupancy_samples_weights_and_mass():
    gamma, horizon = 0.9, 4
    occ = occupancy.occupancy_samples(_FallingEnv, lambda call, obs: np.zeros((len(obs), 1)), episodes=8,
                                      gamma=gamma, horizon=horizon, seed=0, num_envs=3)
    falls = np.array([i % 4 + 2 for i in range(8)])
    np.testing.assert_array_equal(occ.lengths, np.minimum(falls, horizon))
    np.testing.assert_array_equal(occ.terminated, falls <= horizon)
    np.testing.assert_allclose(occ.observations[:, 0], occ.t)  # the state is the step count
    np.testing.assert_allclose(occ.weights, (1 - gamma) * gamma ** occ.t)
    expected = np.mean(np.where(falls <= horizon, 1 - gamma ** falls, 1.0))
    assert occ.mass == pytest.approx(expected)
    # the weights of an episode sum to its mass: 1 - gamma^T when it fell at T, 1 - gamma^horizon if cut
    per_episode = np.bincount(occ.episode, weights=occ.weights)
    np.testing.assert_allclose(per_episode, 1 - gamma ** occ.lengths)
    assert len(occ.t) == occ.lengths.sum()
    np.testing.assert_array_equal(occ.returns, occ.lengths)
    assert occupancy.default_horizon(0.99) == 459  # 0.99^459 < 0.01 < 0.99^458


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    a = rng.integers(0, 20, 500).astype(float)  # many ties
    b = a + rng.normal(size=500) * 5
    assert correlation.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert np.isnan(correlation.pearson(np.ones(10), b[:10]))  # w = 1 has no correlation


@dataclasses.dataclass(frozen=True)
class _ConstantW:
    """Stand-in w network (hashable, as a Flax module): params["w"] on every row."""

    def apply(self, params, obs, act):
        return params["w"] * jnp.ones(obs.shape[0])


def test_run_estimator_leaves_the_policy_state_intact():
    """AMPL's MIW phase donates its input state: run_estimator must hand it copies, so that one
    checkpoint state (and one fresh w) serve every estimator. A stand-in state and phase."""

    @flax.struct.dataclass
    class State:
        step: jax.Array
        actor: jax.Array
        actor_target: jax.Array
        critic: jax.Array
        critic_target: jax.Array
        model: jax.Array
        miw: dict

    def phase(s, data):  # w <- w + actor + critic, as a scanned MIW block would move it
        return s.replace(miw={"w": s.miw["w"] + s.actor + s.critic}), {"miw_loss": s.actor}

    phase = jax.jit(phase, donate_argnums=0)
    agent = types.SimpleNamespace(miw=_ConstantW())
    Data = collections.namedtuple("Data", "observations actions")
    data = Data(jnp.zeros((5, 2)), jnp.zeros((5, 1)))
    one = lambda v: jnp.full((), v, jnp.float32)
    fresh = State(one(0), one(0), one(0), one(0), one(0), one(0), {"w": one(1)})
    policy = State(one(7), one(2), one(2), one(3), one(3), one(0), {"w": one(-1)})
    for _ in range(2):
        w, metrics = run_estimator(agent, phase, fresh, policy, data)
        np.testing.assert_array_equal(w, np.full(5, 6.0))  # fresh w 1 + policy's actor 2 + critic 3
        assert metrics["miw_loss"] == 2.0
    np.testing.assert_array_equal(np.asarray(fresh.miw["w"]), 1.0)  # neither input was consumed
    np.testing.assert_array_equal(np.asarray(policy.actor), 2.0)


def test_snapshot_mixture_is_the_snapshot_policy():
    """beta = 0: snapshot A's tanh-Gaussian sample for the given eps (as ampl_jax.datagen.sac draws
    it); beta = 1: snapshot B's; in between, B's share of rows is beta."""
    from ampl_jax.datagen.sac import actor_forward_np, to_env_action
    from ampl_jax.datagen.snapshots import load_snapshot

    stats = pytest.importorskip("scipy.stats")
    env, act_dim = "Hopper-v5", 3
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(4000, 11)).astype(np.float32)
    noise = np.clip(rng.normal(size=(4000, 8)), -3, 3).astype(np.float32)

    def snap_action(name):
        s = load_snapshot(env, name)
        mean, log_std = actor_forward_np(s.layers, obs)
        return to_env_action(np.tanh(mean + np.exp(log_std) * noise[:, :act_dim]), s.low, s.high)

    hidden = tuple(w.shape[1] for w, _ in load_snapshot(env, "medium").layers[:-1])
    actor = SnapshotMixture(act_dim, hidden, {})
    for beta, expected in ((0.0, snap_action("medium")), (1.0, snap_action("expert"))):
        params = snapshot_params(env, PolicySpec("snapshot", a="medium", b="expert", beta=beta))
        np.testing.assert_allclose(np.asarray(actor.apply(params, obs, noise)[0]), expected, atol=1e-5)
    params = snapshot_params(env, PolicySpec("snapshot", a="medium", b="expert", beta=0.25))
    out = np.asarray(actor.apply(params, obs, noise)[0])
    take_b = stats.norm.cdf(noise[:, act_dim]) < 0.25
    assert abs(take_b.mean() - 0.25) < 0.03
    np.testing.assert_allclose(out, np.where(take_b[:, None], snap_action("expert"), snap_action("medium")), atol=1e-5)


def _tiny_opts(workdir: str) -> dict:
    """Every stage at the smallest size that still runs it: seconds of CPU besides compilation
    (`ampl_overrides`, an option of `run` and not a flag, shrinks the AMPL config)."""
    return {
        "workdir": workdir, "out": "", "minari_dir": "", "seed": 0, "env": "Hopper-v5", "behaviour": "medium",
        "dataset_steps": 2000, "hidden": [16, 16], "model_hidden": [16, 16], "model_epochs": 1, "ampl_steps": 8,
        "checkpoint_every": 4, "policies": "behaviour", "fqe_steps": 10, "miw_steps": 10, "miw_batch": 32,
        "mu0_batch": 16, "estimators": ["td_dice"], "truth_episodes": 4, "truth_horizon": 20,
        "clf_hidden": [8], "clf_epochs": 2, "clf_patience": 1, "clf_weight_decay": 1e-4, "clf_lr": 3e-3,
        "clf_folds": 2,
        # no AMPL run here: only what the states hold (an unfitted world model, a buffer) and the critic's batch
        "ampl_overrides": {"model.num_members": 2, "model.num_elites": 1, "rollout.buffer_capacity": 256,
                           "agent.batch_size": 32, "agent.noise_dim": 8},
    }


@pytest.mark.parametrize("change, message", [
    ({"estimators": ["nope"]}, "--estimators nope"),
    ({"policies": "ampl:6"}, "policy ampl:6"),
    ({"policies": "snapshot:nope"}, "no 'nope' behaviour policy"),
    ({"clf_folds": 5}, "--clf_folds=5"),
    ({"miw_steps": 0}, "--miw_steps=0"),
])
def test_bad_options_fail_in_one_line_before_anything_is_made(tmp_path, change, message):
    opts = {**_tiny_opts(str(tmp_path / "w")), **change}
    with pytest.raises(OptionError, match=message):
        validate(opts)
    assert not os.path.exists(opts["workdir"])


def test_command_exits_2_on_a_bad_option(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ampl_jax.lab.miw_check", "--estimators=nope", f"--workdir={tmp_path}/w"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith("error: --estimators")


BENCH_JSON = os.path.join(REPO_ROOT, "benchmarks", "miw-check-hopper-cpu-2core-2026-11-30.json")


def test_committed_result_has_the_documented_fields():
    """The README's table comes from this JSON: every documented field is there, for every policy
    and estimator, and its `table` is `report.markdown` of its own content."""
    with open(BENCH_JSON) as f:
        saved = json.load(f)
    assert set(report.FIELDS) <= set(saved)
    assert saved["table"] == report.markdown(saved)
    assert [p["action_mse"] for p in saved["policies"]] == sorted(p["action_mse"] for p in saved["policies"])
    for p in saved["policies"]:
        assert set(report.POLICY_FIELDS) <= set(p) and set(report.TRUTH_FIELDS) <= set(p["truth"])
        assert set(saved["options"]["estimators"]) | {"w = 1", "initial_w"} <= set(p["estimators"])
        assert all(set(report.SCORE_FIELDS) <= set(e) for e in p["estimators"].values())
        assert 0.0 < p["truth"]["rollouts"]["mass"] <= 1.0


@pytest.mark.slow
def test_tiny_check_writes_the_documented_json(tmp_path):
    """The whole pipeline at tiny sizes, on the behaviour snapshot (no AMPL run: compiling AMPL's
    update step alone takes a minute; the AMPL actors' path is the real check's): the JSON has
    every documented field, and its numbers are what they say (E_D[w = 1] = 1, the occupancy's mass
    in (0, 1], the estimator's block length, the data's size)."""
    from ampl_jax.lab.miw_check import run

    opts = _tiny_opts(str(tmp_path / "w"))
    result = run(opts, log=lambda msg: None)
    with open(tmp_path / "w" / "miw_check.json") as f:
        saved = json.load(f)
    assert set(report.FIELDS) <= set(saved)
    assert saved["ampl_run"] is None and not os.path.exists(tmp_path / "w" / "ampl_run")
    assert [p["label"] for p in saved["policies"]] == [p["label"] for p in result["policies"]] == ["snapshot medium"]
    (p,) = saved["policies"]
    assert set(report.POLICY_FIELDS) <= set(p) and set(report.TRUTH_FIELDS) <= set(p["truth"])
    assert 0.0 < p["truth"]["rollouts"]["mass"] <= 1.0 and p["truth"]["rollouts"]["episodes"] == 4
    assert set(p["estimators"]) == {"w = 1", "initial_w", "td_dice"}
    for e in p["estimators"].values():
        assert set(report.SCORE_FIELDS) <= set(e)
    assert p["estimators"]["w = 1"]["mean_w"] == 1.0
    assert p["estimators"]["td_dice"]["steps"] == 10 and "miw_loss" in p["estimators"]["td_dice"]["miw_metrics"]
    assert saved["dataset"]["transitions"] == 2000
    assert "| snapshot medium (" in saved["table"]
    w = np.load(tmp_path / "w" / "miw_check_w.npz")
    assert set(w.files) == {"w_true/snapshot medium", "td_dice/snapshot medium"}
    assert w["td_dice/snapshot medium"].shape == (2000,)
