"""D4RL-style dataset families made from the shipped SAC behaviour policies (small datasets).

Checks what a user of `make_dataset` relies on: returns ordered random < medium < expert,
medium-expert holding both halves, medium-replay being the shipped buffer, spaces and episode
bounds (time-limit cuts are truncations, not dones), and the reference scores in the metadata.
"""

from __future__ import annotations

import json

import gymnasium
import minari
import numpy as np
import pytest

from ampl_jax.datagen import snapshots
from ampl_jax.data import scores
from ampl_jax.datagen import policies
from ampl_jax.data.load import DatasetError, load_dataset
from ampl_jax.datagen.make_dataset import families, make_dataset

SHIPPED_ENVS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")
# Steps per family: about three episodes of the trained policies, a few random ones.
FAMILY_STEPS = {"random": 300, "medium": 3000, "expert": 3000}


def _episode_returns(dataset_id: str, complete_only: bool = True) -> np.ndarray:
    """Returns of the episodes; the one cut by the step budget is left out unless it is the only one."""
    eps = list(minari.load_dataset(dataset_id).iterate_episodes())
    rets = [float(ep.rewards.sum()) for ep in eps]
    if complete_only and len(eps) > 1:
        rets = rets[:-1]
    return np.asarray(rets)


@pytest.fixture(scope="module")
def family_datasets(minari_root) -> dict[tuple[str, str], str]:
    """{(env, family): dataset id} for random/medium/expert of every shipped env."""
    ids = {}
    for env_id in SHIPPED_ENVS:
        family = scores.env_family(env_id)
        for policy, steps in FAMILY_STEPS.items():
            dataset_id = f"test/{family}/{policy}-v0"
            make_dataset(env_id, policy, steps, 0, dataset_id, progress=False)
            ids[env_id, policy] = dataset_id
    return ids


def test_every_env_ships_medium_expert_and_replay():
    shipped = snapshots.available_snapshots()
    for env_id in SHIPPED_ENVS:
        assert shipped.get(env_id) == ["medium", "expert"], shipped
        med = snapshots.load_snapshot(env_id, "medium").meta
        exp = snapshots.load_snapshot(env_id, "expert").meta
        for m in (med, exp):
            assert m["env_id"] == env_id and m["eval_episodes"] >= 10
            assert {"return_std", "stochastic_return_std", "training_wall_time_s", "command"} <= set(m)
        assert med["return_mean"] < exp["return_mean"]
        assert med["snapshot_env_steps"] <= med["training_env_steps"] == exp["training_env_steps"]
        z = snapshots.load_replay(env_id)
        assert len(z["rewards"]) == med["snapshot_env_steps"] == z["lengths"].sum()


@pytest.mark.parametrize("env_id", SHIPPED_ENVS)
def test_returns_ordered_random_medium_expert(family_datasets, env_id):
    means = {p: _episode_returns(family_datasets[env_id, p]).mean() for p in FAMILY_STEPS}
    assert means["random"] < means["medium"] < means["expert"], means


@pytest.mark.parametrize("env_id", SHIPPED_ENVS)
def test_reference_scores_and_eval_env(family_datasets, env_id):
    data, info = load_dataset(family_datasets[env_id, "medium"])
    expert = snapshots.load_snapshot(env_id, "expert")
    assert info.ref_min_score == pytest.approx(scores.RANDOM_RETURNS_V5[env_id][0])
    assert info.ref_max_score == pytest.approx(expert.meta["stochastic_return_mean"])
    meta = minari.load_dataset(family_datasets[env_id, "medium"]).storage.metadata
    assert json.loads(meta["eval_env_spec"])["id"] == env_id
    assert "medium" in meta["description"] and "SAC snapshot" in meta["description"]
    assert "truncations, not terminations" in meta["description"]


@pytest.mark.parametrize("env_id", SHIPPED_ENVS)
def test_spaces_and_episode_bounds(family_datasets, env_id):
    env = gymnasium.make(env_id)
    limit = env.spec.max_episode_steps
    for policy in FAMILY_STEPS:
        dataset_id = family_datasets[env_id, policy]
        ds = minari.load_dataset(dataset_id)
        assert ds.observation_space == env.observation_space and ds.action_space == env.action_space
        eps = list(ds.iterate_episodes())
        assert sum(len(ep.rewards) for ep in eps) == FAMILY_STEPS[policy] == ds.total_steps
        for ep in eps:
            n = len(ep.rewards)
            assert ep.observations.shape == (n + 1, env.observation_space.shape[0]) and n <= limit
            assert np.all(np.abs(ep.actions) <= env.action_space.high)
            # Only the last step ends the episode, and exactly one way.
            assert not ep.terminations[:-1].any() and not ep.truncations[:-1].any()
            assert ep.terminations[-1] != ep.truncations[-1]
            if n == limit:  # the time limit is a truncation, not a termination
                assert ep.truncations[-1] and not ep.terminations[-1]
        data, _ = load_dataset(dataset_id)
        assert float(data.dones.sum()) == sum(bool(ep.terminations[-1]) for ep in eps)


def test_halfcheetah_never_terminates(family_datasets):
    """HalfCheetah has no termination: every episode ends at the 1000-step limit, done = 0."""
    data, info = load_dataset(family_datasets["HalfCheetah-v5", "expert"])
    assert info.num_episodes == 3 and float(data.dones.sum()) == 0


def test_medium_expert_holds_both_halves(family_datasets, minari_root):
    make_dataset("Hopper-v5", "medium-expert", 4000, 0, "test/hopper/medium-expert-v0", progress=False)
    ds = minari.load_dataset("test/hopper/medium-expert-v0")
    meta = ds.storage.metadata
    eps = list(ds.iterate_episodes())
    k = meta["ampl_medium_episodes"]
    assert k + meta["ampl_expert_episodes"] == len(eps) and ds.total_steps == 4000
    assert sum(len(ep.rewards) for ep in eps[:k]) == 2000  # the first half is the medium policy's
    medium_part = [float(ep.rewards.sum()) for ep in eps[: k - 1]]  # complete medium episodes
    expert_part = [float(ep.rewards.sum()) for ep in eps[k:-1]]
    assert np.mean(medium_part) < np.mean(expert_part)
    assert eps[k - 1].truncations[-1] or eps[k - 1].terminations[-1]  # the medium half ends there
    # The medium half is the medium dataset's policy with the same seed: identical first episode.
    med = list(minari.load_dataset(family_datasets["Hopper-v5", "medium"]).iterate_episodes())
    np.testing.assert_array_equal(eps[0].actions, med[0].actions)


def test_medium_replay_is_the_shipped_buffer(minari_root):
    make_dataset("Walker2d-v5", "medium-replay", 5000, 0, "test/walker2d/medium-replay-v0", progress=False)
    z = snapshots.load_replay("Walker2d-v5")
    data, info = load_dataset("test/walker2d/medium-replay-v0")
    assert info.num_transitions == min(5000, len(z["rewards"]))
    n = info.num_transitions
    np.testing.assert_allclose(np.asarray(data.rewards), z["rewards"][:n], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(data.actions), z["actions"][:n], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(data.dones), z["terminations"][:n])
    eps = list(minari.load_dataset("test/walker2d/medium-replay-v0").iterate_episodes())
    assert eps[-1].truncations[-1] or eps[-1].terminations[-1]
    assert all(len(ep.rewards) <= 1000 for ep in eps)


def test_missing_snapshot_and_unknown_family_are_clear(minari_root):
    env = gymnasium.make("InvertedPendulum-v5")
    missing = "no 'expert' behaviour policy is shipped for InvertedPendulum-v5"
    with pytest.raises(policies.PolicyError, match=missing):
        policies.make_policy("expert", env, 0)
    with pytest.raises(DatasetError, match="no medium-replay buffer is shipped"):
        make_dataset("InvertedPendulum-v5", "medium-replay", 10, 0, "test/ip/mr-v0", progress=False)
    known = "available: expert, medium, random, medium-replay, medium-expert"
    with pytest.raises(policies.PolicyError, match=known):
        make_dataset("Hopper-v5", "replay", 10, 0, "test/hopper/x-v0", progress=False)


# D4RL's v2 random / expert returns, written out here so that the table is checked, not echoed.
D4RL_V2 = {"Hopper-v5": (-20.27, 3234.3), "Walker2d-v5": (1.63, 4592.3), "HalfCheetah-v5": (-280.18, 12135.0)}
ALL_FAMILIES = ("random", "medium", "expert", "medium-replay", "medium-expert")


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_family_carries_both_score_scales(minari_root, family):
    """A tiny dataset of each family: its own ref scores (v5 random, shipped expert) and D4RL's v2 ones."""
    assert set(families()) == set(ALL_FAMILIES)
    env_id = SHIPPED_ENVS[ALL_FAMILIES.index(family) % len(SHIPPED_ENVS)]  # every env, some family each
    dataset_id = f"test/scales/{scores.env_family(env_id)}-{family}-v0"
    make_dataset(env_id, family, 200, 0, dataset_id, progress=False)
    meta = minari.load_dataset(dataset_id).storage.metadata
    expert = snapshots.load_snapshot(env_id, "expert").meta["stochastic_return_mean"]
    # Dataset scale: the dataset's own references, unchanged.
    assert meta["ref_min_score"] == pytest.approx(scores.RANDOM_RETURNS_V5[env_id][0])
    assert meta["ref_max_score"] == pytest.approx(expert)
    # D4RL scale: v2 numbers, with the note that the env is v5.
    low, high = D4RL_V2[env_id]
    assert meta["d4rl_ref_min_score"] == pytest.approx(low, abs=0.01)
    assert meta["d4rl_ref_max_score"] == pytest.approx(high)
    assert "v2" in meta["d4rl_ref_note"] and "v5" in meta["d4rl_ref_note"]
    assert meta["ampl_family"] == family
    _, info = load_dataset(dataset_id)
    assert (info.ref_min_score, info.ref_max_score) == (meta["ref_min_score"], meta["ref_max_score"])
    assert (info.d4rl_ref_min_score, info.d4rl_ref_max_score) == (meta["d4rl_ref_min_score"], meta["d4rl_ref_max_score"])
    assert info.ref_max_score != info.d4rl_ref_max_score  # two different scales, not one copied


def test_env_without_d4rl_reference_has_only_the_dataset_scale(minari_root):
    make_dataset("InvertedPendulum-v5", "random", 100, 0, "test/ip/random-v0", ref_episodes=2, progress=False)
    meta = minari.load_dataset("test/ip/random-v0").storage.metadata
    assert "ref_min_score" in meta and not any(k.startswith("d4rl_") for k in meta)
    _, info = load_dataset("test/ip/random-v0")
    assert info.ref_min_score is not None
    assert info.d4rl_ref_min_score is None and info.d4rl_ref_max_score is None


@pytest.mark.parametrize("env_id", ["Hopper-v5"])
def test_describe_returns_by_hand(family_datasets, env_id):
    """The dataset table's figures equal the episodes' returns and both scales' formulas."""
    from ampl_jax.data.describe import describe

    dataset_id = family_datasets[env_id, "medium"]
    every, complete = _episode_returns(dataset_id, complete_only=False), _episode_returns(dataset_id)
    meta = minari.load_dataset(dataset_id).storage.metadata
    row = describe(dataset_id)
    assert row["episodes"] == len(every) and row["transitions"] == FAMILY_STEPS["medium"]
    assert row["return_mean"] == pytest.approx(every.mean()) and row["return_std"] == pytest.approx(every.std())
    lo, hi = meta["ref_min_score"], meta["ref_max_score"]
    assert row["normalized_score"] == pytest.approx(100 * (every.mean() - lo) / (hi - lo))
    d_lo, d_hi = scores.reference_scores(env_id)
    assert row["d4rl_normalized_score"] == pytest.approx(100 * (every.mean() - d_lo) / (d_hi - d_lo))
    # The budget cut the last (short) episode: complete_only leaves it out.
    assert describe(dataset_id, complete_only=True)["return_mean"] == pytest.approx(complete.mean())


@pytest.mark.parametrize("policy, steps", [("random", 400), ("medium-expert", 1200)])
def test_in_memory_collection_equals_minari_data_collector(minari_root, policy, steps):
    """make_dataset writes its episodes in one go; the dataset is the one minari.DataCollector
    writes episode by episode (same steps, seeds, ends), the way make_dataset used to collect."""
    env_id, seed = "Hopper-v5", 3
    ours = f"test/hopper/{policy}-ours-v0"
    make_dataset(env_id, policy, steps, seed, ours, progress=False)

    env = gymnasium.make(env_id)
    collector = minari.DataCollector(env, record_infos=False)
    halves = [("medium", steps // 2, seed), ("expert", steps - steps // 2, seed + 1)] if policy == "medium-expert" \
        else [(policy, steps, seed)]
    episode_seeds = np.random.default_rng([seed, 1])
    for name, n, s in halves:
        act = policies.make_policy(name, env, s)
        obs, _ = collector.reset(seed=int(episode_seeds.integers(2**31)))
        for t in range(n):
            obs, _, terminated, truncated, _ = collector.step(act(obs))
            if (terminated or truncated) and t < n - 1:
                obs, _ = collector.reset(seed=int(episode_seeds.integers(2**31)))
    theirs = f"test/hopper/{policy}-collector-v0"
    collector.create_dataset(dataset_id=theirs, eval_env=env_id, algorithm_name="test", author="test")
    collector.close()

    a, b = (list(minari.load_dataset(d).iterate_episodes()) for d in (ours, theirs))
    assert len(a) == len(b) > (2 if policy == "random" else 1)
    for x, y in zip(a, b):
        assert x.id == y.id
        for k in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(x, k), getattr(y, k), err_msg=k)
    assert sum(len(x.rewards) for x in a) == steps
