"""ampl_jax.lab.critic_check: the simulator set to a dataset state, Monte Carlo values, the ranking rows."""

import math

import gymnasium
import numpy as np
import pytest

from ampl_jax.lab import critic_check
from tests import runs


def test_set_state_reproduces_the_observation_and_its_future():
    """A second env put in the first one's observed state observes it and moves on identically
    (the x position, left out of the observation, does not change the dynamics)."""
    a, b = gymnasium.make("Hopper-v5"), gymnasium.make("Hopper-v5")
    try:
        a.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(5):
            obs, *_ = a.step(rng.uniform(-1, 1, 3))
        b.reset(seed=123)
        critic_check.set_state(b, obs)
        np.testing.assert_allclose(b.unwrapped._get_obs(), obs, atol=1e-12)
        act = rng.uniform(-1, 1, 3)
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
        np.testing.assert_allclose(ob, oa, atol=1e-9)
        assert rb == pytest.approx(ra, abs=1e-9)
        with pytest.raises(ValueError, match="qpos"):
            critic_check.set_state(b, obs[:-1])
    finally:
        a.close(), b.close()


def test_mc_values_discount_by_hand():
    """Reward 1 per step, gamma 0.5, 3 steps from a standing hopper that does not fall: 1.75."""
    env = gymnasium.make("Hopper-v5")
    start, _ = env.reset(seed=0)
    env.close()
    states = np.stack([start, start])
    zero = np.zeros((2, 3))
    values = critic_check.mc_values(lambda o: np.zeros((o.shape[0], 3)), "Hopper-v5", states, zero,
                                    horizon=3, gamma=0.5, reward_fn=lambda r: 1.0)
    np.testing.assert_allclose(values, [1.75, 1.75])


def test_ranking_rows_on_a_saved_run(ref, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ref["minari"]))
    rows = critic_check.check_ranking(str(ref["ref"]), steps=[40], num_states=3, samples=4, repeats=1, horizon=5)
    assert [(r["step"], r["samples"], r["states"]) for r in rows] == [(40, 4, 3)]
    r = rows[0]
    assert r["value_worst"] <= r["value_chosen"] <= r["value_best"] and r["value_worst"] <= r["value_mean"] <= r["value_best"]
    assert r["q_chosen"] >= r["q_mean"]  # the choice is the argmax of Q
    assert -1.0 <= r["spearman_mean"] <= 1.0 and 0.0 <= r["spearman_negative_fraction"] <= 1.0
    assert r["states_from"] == "data" and all(math.isfinite(v) for k, v in r.items() if k != "states_from")
    visited = critic_check.check_ranking(str(ref["ref"]), steps=[40], num_states=2, samples=3, repeats=1, horizon=3,
                                         states_from="best_of_n")
    assert visited[0]["states_from"] == "best_of_n" and math.isfinite(visited[0]["spearman_mean"])
    with pytest.raises(ValueError, match="unknown states_from"):
        critic_check.check_ranking(str(ref["ref"]), states_from="replay")
    with pytest.raises(ValueError, match="samples >= 2"):
        critic_check.check_ranking(str(ref["ref"]), steps=[40], samples=1)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return runs.session_dirs(tmp_path_factory)
