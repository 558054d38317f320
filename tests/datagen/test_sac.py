"""SAC behaviour-policy trainer: it learns, its host-side actor matches the JAX one, snapshots round-trip."""

from __future__ import annotations

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax import networks
from ampl_jax.datagen import sac as sac_lib
from ampl_jax.datagen import snapshots
from ampl_jax.datagen.sac import SAC, SACConfig
from ampl_jax.datagen.run_dir import HostReplay
from ampl_jax.datagen.train_sac import choose_snapshots, evaluate, ship, train
from ampl_jax.datagen.policies import make_policy

TINY = SACConfig(hidden_dims=(64, 64), batch_size=128)


@pytest.fixture(scope="module")
def pendulum_run():
    """3000 steps of SAC on InvertedPendulum-v5 (about 10 s): random scores ~5, SAC ~100."""
    return train(
        "InvertedPendulum-v5", 3000, 0, config=TINY, start_steps=1000, eval_every=1000,
        eval_episodes=5, log=None,
    )


def test_tiny_sac_run_beats_random_by_far(pendulum_run):
    env = gymnasium.make("InvertedPendulum-v5")
    pi = make_policy("random", env, 0)
    random_returns = []
    for i in range(20):
        obs, _ = env.reset(seed=i)
        done, total = False, 0.0
        while not done:
            obs, r, terminated, truncated, _ = env.step(pi(obs))
            total, done = total + r, terminated or truncated
        random_returns.append(total)
    best = max(e["mean"] for e in pendulum_run.evaluations)
    # Seeds 0-2 reach 94-107 at 3000 steps; random is ~4.5 (max 11 over 20 episodes).
    assert np.mean(random_returns) < 10
    assert best > 40, pendulum_run.evaluations
    assert pendulum_run.evaluations[-1]["step"] == 3000 and pendulum_run.replay.size == 3000


def test_shipped_files_round_trip(pendulum_run, tmp_path):
    metas = ship(pendulum_run, "InvertedPendulum-v5", tmp_path, "test", TINY, 0, final_episodes=2)
    exp, med = metas["expert"], metas["medium"]
    assert exp["return_mean"] >= 0 and exp["eval_episodes"] == 2
    assert med["snapshot_env_steps"] in pendulum_run.params
    snap = snapshots.load_snapshot("InvertedPendulum-v5", "expert", root=tmp_path)
    assert snap.meta["snapshot_env_steps"] == exp["snapshot_env_steps"]
    ref = sac_lib.actor_layers(pendulum_run.params[exp["snapshot_env_steps"]])
    for (w, b), (w2, b2) in zip(snap.layers, ref):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)
    # The replay prefix up to the medium snapshot, in Minari's episode layout.
    z = np.load(snapshots.medium_replay_path("InvertedPendulum-v5", tmp_path))
    n = med["snapshot_env_steps"]
    assert len(z["rewards"]) == n == z["lengths"].sum()
    assert len(z["observations"]) == n + len(z["lengths"])
    assert z["truncations"][-1] != z["terminations"][-1]  # the cut episode ends once
    with pytest.raises(snapshots.SnapshotError, match="no 'expert' behaviour policy is shipped for Foo-v0"):
        snapshots.load_snapshot("Foo-v0", "expert", root=tmp_path)


def test_numpy_actor_matches_flax():
    agent = SAC(5, 2, TINY)
    state = agent.init(jax.random.key(1))
    obs = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    mean, log_std = agent.distribution(state.actor, jnp.asarray(obs))
    m2, ls2 = sac_lib.actor_forward_np(sac_lib.actor_layers(jax.device_get(state.actor)), obs)
    np.testing.assert_allclose(m2, np.asarray(mean), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ls2, np.asarray(log_std), rtol=1e-5, atol=1e-5)
    assert np.all(ls2 >= sac_lib.LOG_STD_MIN) and np.all(ls2 <= sac_lib.LOG_STD_MAX)


@pytest.mark.parametrize("max_action", [1.0, 2.5])
def test_tanh_gaussian_log_prob(max_action):
    """log pi(a) of a = max_action * tanh(u) by the change of variables (MOPO's boxes are not [-1, 1])."""
    mean = jnp.array([[0.3, -1.2], [2.0, 0.0]])
    log_std = jnp.array([[-0.5, 0.1], [0.0, -2.0]])
    eps = jax.random.normal(jax.random.key(0), mean.shape)
    a, raw, logp = networks.sample_tanh_gaussian(mean, log_std, eps, max_action)
    np.testing.assert_allclose(np.asarray(raw), np.asarray(mean + jnp.exp(log_std) * eps), rtol=1e-6)
    u = np.arctanh(np.clip(np.asarray(a, np.float64) / max_action, -1 + 1e-12, 1 - 1e-12))
    std = np.exp(np.asarray(log_std, np.float64))
    gauss = -0.5 * ((u - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    expected = (gauss - np.log(1 - np.tanh(u) ** 2) - np.log(max_action)).sum(-1)
    np.testing.assert_allclose(np.asarray(logp), expected, rtol=1e-3, atol=1e-3)


def test_update_many_is_the_scanned_update():
    agent = SAC(3, 1, SACConfig(hidden_dims=(16,), batch_size=8))
    state = agent.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    batches = sac_lib.Batch(
        rng.normal(size=(3, 8, 3)).astype(np.float32),
        rng.uniform(-1, 1, (3, 8, 1)).astype(np.float32),
        rng.normal(size=(3, 8)).astype(np.float32),
        rng.normal(size=(3, 8, 3)).astype(np.float32),
        (rng.uniform(size=(3, 8)) < 0.2).astype(np.float32),
    )
    seq = state
    for i in range(3):
        seq, _ = jax.jit(agent.update)(seq, jax.tree.map(lambda x: x[i], batches))
    scanned, metrics = agent.update_many(agent.init(jax.random.key(0)), batches)
    assert int(scanned.step) == 3 and set(metrics) >= {"critic_loss", "alpha", "entropy"}
    for x, y in zip(jax.tree.leaves(seq.actor), jax.tree.leaves(scanned.actor)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


def test_choose_snapshots_d4rl_rule():
    pairs = ((10, 50.0), (20, 900.0), (30, 3000.0), (40, 2500.0))
    evals = [{"step": s, "mean": m, "std": 0.0} for s, m in pairs]
    assert choose_snapshots(evals) == {"expert": 30, "medium": 20}


def test_host_replay_episodes_cut_as_truncation():
    rb = HostReplay(10, 2, 1)
    ends = {2: "term", 6: "trunc"}
    for t in range(10):
        kind = ends.get(t)
        rb.add(np.full(2, t), np.array([0.5]), float(t), np.full(2, t + 1), kind == "term", kind == "trunc")
    eps = rb.episodes(8, np.array([-2.0]), np.array([2.0]))
    np.testing.assert_array_equal(eps["lengths"], [3, 4, 1])
    np.testing.assert_array_equal(eps["terminations"], [0, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(eps["truncations"], [0, 0, 0, 0, 0, 0, 1, 1])
    assert eps["observations"].shape == (8 + 3, 2) and eps["observations"][3, 0] == 3  # s' of the end
    np.testing.assert_allclose(eps["actions"], 1.0)  # tanh-space 0.5 -> env-space 1.0 in [-2, 2]


def test_evaluate_is_deterministic_without_rng():
    agent = SAC(4, 1, TINY)
    layers = sac_lib.actor_layers(jax.device_get(agent.init(jax.random.key(0)).actor))
    env = gymnasium.make("InvertedPendulum-v5")
    a, b = evaluate(env, layers, 2, seed=5), evaluate(env, layers, 2, seed=5)
    np.testing.assert_array_equal(a, b)


def test_sac_run_resumes_bit_identical(tmp_path):
    """A run stopped at a checkpoint and continued by the same call equals one that never stopped."""
    kw = dict(config=TINY, start_steps=500, eval_every=500, eval_episodes=2, checkpoint_every=500, log=None)
    whole = train("InvertedPendulum-v5", 1500, 3, workdir=tmp_path / "a", **kw)
    first = train("InvertedPendulum-v5", 1000, 3, workdir=tmp_path / "b", **kw)
    assert [e["step"] for e in first.evaluations] == [500, 1000]
    resumed = train("InvertedPendulum-v5", 1500, 3, workdir=tmp_path / "b", **kw)
    strip = lambda evals: [{k: v for k, v in e.items() if k != "wall_s"} for e in evals]  # noqa: E731
    assert strip(resumed.evaluations) == strip(whole.evaluations)
    assert sorted(resumed.params) == [500, 1000, 1500]
    for x, y in zip(jax.tree.leaves(resumed.params[1500]), jax.tree.leaves(whole.params[1500])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for k in ("obs", "act", "rew", "next_obs", "term", "trunc"):
        np.testing.assert_array_equal(getattr(resumed.replay, k), getattr(whole.replay, k))
    assert resumed.replay.trunc[999] == 1  # the checkpoint step cuts its episode
    # Another seed in the same run directory is refused before anything is overwritten.
    with pytest.raises(ValueError, match="seed=3, not 4"):
        train("InvertedPendulum-v5", 1500, 4, workdir=tmp_path / "b", **kw)
