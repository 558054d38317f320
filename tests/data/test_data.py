"""Data layer: loading a real Minari dataset, its invariants, refusals, and dataset creation."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium
import h5py
import jax.numpy as jnp
import minari
import numpy as np
import pytest

from ampl_jax.data import preprocess, scores
from ampl_jax.datagen import policies
from ampl_jax.data.load import DatasetError, dataset_path, load_dataset
from ampl_jax.datagen.make_dataset import make_dataset
from ampl_jax.world_model.ensemble import fit_normalizer
from tests.runs import ROOT as REPO_ROOT

REPO = REPO_ROOT  # the repository (tests/runs.py)


@pytest.fixture(scope="module")
def loaded(hopper_random):
    data, info = load_dataset(hopper_random)
    episodes = list(minari.load_dataset(hopper_random).iterate_episodes())
    return data, info, episodes


def _episode_ends(episodes) -> np.ndarray:
    return np.cumsum([len(ep.rewards) for ep in episodes]) - 1


def _copy_dataset(src: str, dst: str) -> Path:
    """Copy a dataset under a new id (the files are then tampered with by the test)."""
    shutil.copytree(dataset_path(src), dataset_path(dst))
    meta_file = dataset_path(dst) / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["dataset_id"] = dst
    meta_file.write_text(json.dumps(meta))
    return dataset_path(dst) / "data"


def _set_metadata(data_dir: Path, **kv) -> None:
    meta_file = data_dir / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta.update(kv)
    meta_file.write_text(json.dumps(meta))


# --- loading ------------------------------------------------------------------------------------


def test_shapes_counts_and_dtypes(loaded):
    data, info, episodes = loaded
    n = 3000
    assert data.size == info.num_transitions == n
    assert (info.obs_dim, info.act_dim, info.max_action) == (11, 3, 1.0)
    assert info.env_id == "Hopper-v5"
    assert info.num_episodes == len(episodes) == data.init_observations.shape[0]
    for name, x in data._asdict().items():
        assert x.dtype == jnp.float32, name
        if name != "init_observations":
            assert x.shape[0] == n, name
    assert data.observations.shape == data.next_observations.shape == (n, 11)
    assert data.actions.shape == data.next_actions.shape == (n, 3)
    t = data.transitions()
    assert t.rewards is data.scaled_rewards and data.transitions(scaled=False).rewards is data.rewards


def test_transitions_follow_the_episodes(loaded):
    data, _, episodes = loaded
    obs = np.asarray(data.observations)
    nxt = np.asarray(data.next_observations)
    acts = np.asarray(data.actions)
    start = 0
    for ep in episodes:
        n = len(ep.rewards)
        np.testing.assert_allclose(obs[start : start + n], ep.observations[:-1], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(nxt[start : start + n], ep.observations[1:], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(acts[start : start + n], ep.actions, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(data.rewards[start : start + n]), ep.rewards, rtol=1e-5)
        start += n
    # Within an episode s' of step t is s of step t + 1, and a' of step t is a of step t + 1.
    within = np.asarray(data.next_action_valid[:-1]) == 1
    np.testing.assert_array_equal(nxt[:-1][within], obs[1:][within])
    np.testing.assert_array_equal(np.asarray(data.next_actions[:-1])[within], acts[1:][within])


def test_dones_are_true_terminations_only(loaded):
    data, _, episodes = loaded
    dones = np.asarray(data.dones)
    np.testing.assert_array_equal(dones, np.concatenate([ep.terminations for ep in episodes]))
    ends = _episode_ends(episodes)
    assert set(np.flatnonzero(dones)) <= set(ends)  # a termination ends its episode
    # The last episode is cut by the step budget: a truncation, never a done.
    assert episodes[-1].truncations[-1] and not episodes[-1].terminations[-1] and dones[-1] == 0
    assert dones.sum() == len(episodes) - 1  # random Hopper falls long before its 1000-step limit
    # Physically: done exactly where s' breaks Hopper's health rule (z, angle, state range).
    env = gymnasium.make("Hopper-v5").unwrapped
    nxt = np.asarray(data.next_observations, np.float64)
    (z_lo, z_hi), (a_lo, a_hi), (s_lo, s_hi) = (
        env._healthy_z_range,
        env._healthy_angle_range,
        env._healthy_state_range,
    )
    healthy = (
        (z_lo < nxt[:, 0])
        & (nxt[:, 0] < z_hi)
        & (a_lo < nxt[:, 1])
        & (nxt[:, 1] < a_hi)
        & np.all((s_lo < nxt[:, 1:]) & (nxt[:, 1:] < s_hi), axis=1)
    )
    np.testing.assert_array_equal(dones == 1, ~healthy)


def test_next_action_valid_is_zero_exactly_at_episode_ends(loaded):
    data, _, episodes = loaded
    expected = np.ones(data.size, np.float32)
    expected[_episode_ends(episodes)] = 0
    np.testing.assert_array_equal(np.asarray(data.next_action_valid), expected)
    assert np.all(np.asarray(data.next_actions)[expected == 0] == 0)


def test_mu0_is_the_first_state_of_every_episode(loaded):
    data, _, episodes = loaded
    firsts = np.stack([ep.observations[0] for ep in episodes])
    np.testing.assert_allclose(np.asarray(data.init_observations), firsts, rtol=1e-6, atol=1e-6)
    starts = np.concatenate([[0], _episode_ends(episodes)[:-1] + 1])
    np.testing.assert_array_equal(np.asarray(data.observations)[starts], np.asarray(data.init_observations))


def test_rescaled_rewards(loaded):
    data, info, _ = loaded
    raw = np.asarray(data.rewards, np.float64)
    assert info.reward_min == pytest.approx(raw.min(), abs=1e-5)
    assert info.reward_max == pytest.approx(raw.max(), abs=1e-5)
    span = info.reward_max - info.reward_min
    r = np.asarray(data.scaled_rewards)
    assert r.min() > 0 and r.max() <= 1 + 1e-3 / span + 1e-6
    assert r.min() == pytest.approx(1e-3 / span, rel=1e-3)
    np.testing.assert_allclose(r, (raw - info.reward_min + 1e-3) / span, rtol=1e-5, atol=1e-6)
    back = preprocess.unscale_rewards(data.scaled_rewards, info.reward_min, info.reward_max)
    np.testing.assert_allclose(np.asarray(back), raw, atol=1e-5)


def test_reference_scores_and_env_spec(loaded):
    _, info, _ = loaded
    from ampl_jax.datagen.snapshots import load_snapshot

    assert info.ref_max_score == pytest.approx(load_snapshot("Hopper-v5", "expert").return_mean)
    assert info.ref_min_score is not None and -100 < info.ref_min_score < 200  # random Hopper return
    spec = gymnasium.envs.registration.EnvSpec.from_json(info.env_spec_json)
    assert spec.id == "Hopper-v5" and spec.max_episode_steps == 1000


# --- preprocessing ------------------------------------------------------------------------------


def test_rescale_guards_constant_rewards():
    r = preprocess.rescale_rewards(jnp.full((4,), 2.5), 2.5, 2.5)
    assert np.all(np.isfinite(np.asarray(r))) and np.allclose(np.asarray(r), 1e-3)


def test_obs_range_and_reward_bound():
    s = jnp.array([[1.0, -3.0], [-2.0, 0.5]])
    s2 = jnp.array([[0.0, 4.0], [0.5, 0.0]])
    np.testing.assert_allclose(np.asarray(preprocess.obs_range(s)), [4.0, 6.0])
    np.testing.assert_allclose(np.asarray(preprocess.obs_range(s, s2)), [4.0, 8.0])
    r = jnp.array([0.0, 1.0])  # sigma = 0.5: max(|0 - 5|, |1 + 5|) = 6
    assert float(preprocess.reward_bound(r)) == pytest.approx(6.0)
    r = jnp.array([-3.0, -1.0])  # sigma = 1: max(|-3 - 10|, |-1 + 10|) = 13
    assert float(preprocess.reward_bound(r)) == pytest.approx(13.0)


def test_normalizer_roundtrip_and_constant_dims():
    """The world model's input/target standardisation."""
    x = jnp.asarray(np.random.default_rng(0).normal(3.0, 2.0, (500, 3)), jnp.float32)
    x = x.at[:, 2].set(7.0)  # a constant feature keeps scale 1
    norm = fit_normalizer(x)
    z = norm(x)
    np.testing.assert_allclose(np.asarray(z[:, :2].mean(0)), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(z[:, :2].std(0)), 1, atol=1e-4)
    assert float(norm.std[2]) == 1.0 and np.allclose(np.asarray(z[:, 2]), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(norm.inverse(z)), np.asarray(x), atol=1e-5)


def test_normalized_score_math():
    ns = preprocess.normalized_score
    assert float(ns(-20.0, -20.0, 180.0)) == pytest.approx(0.0)
    assert float(ns(180.0, -20.0, 180.0)) == pytest.approx(100.0)
    assert float(ns(80.0, -20.0, 180.0)) == pytest.approx(50.0)
    np.testing.assert_allclose(np.asarray(ns(jnp.array([-220.0, 380.0]), -20.0, 180.0)), [-100.0, 200.0])


def test_reference_score_table():
    assert scores.reference_scores("Hopper-v5") == (-20.272305, 3234.3)
    assert scores.reference_scores("HalfCheetah-v5") == (-280.178953, 12135.0)
    assert scores.reference_scores("Walker2d-v4") == (1.629008, 4592.3)
    assert scores.reference_scores("Ant-v5") == (-325.6, 3879.7)
    assert scores.reference_scores("mujoco/halfcheetah/medium-v0") == (-280.178953, 12135.0)
    assert scores.reference_scores("CartPole-v1") is None
    assert scores.reference_scores("Pendulum-v1") is None


def test_d4rl_normalized_score_known_values():
    d = scores.d4rl_normalized_score
    assert d(3234.3, "Hopper-v5") == pytest.approx(100.0)
    assert d(-20.27, "Hopper-v5") == pytest.approx(0.0, abs=1e-3)  # D4RL's -20.272305, rounded
    assert d(4592.3, "ampl/walker2d/medium-v0") == pytest.approx(100.0)
    assert d(1.629008, "mujoco/walker2d/expert-v0") == pytest.approx(0.0)
    assert d((12135.0 - 280.178953) / 2, "HalfCheetah-v5") == pytest.approx(50.0)
    assert d(-20.272305 - 3254.572305, "Hopper-v5") == pytest.approx(-100.0)  # below random: negative
    assert math.isnan(d(500.0, "InvertedPendulum-v5"))  # D4RL never scored it
    assert d(5.0, "InvertedPendulum-v5", (0.0, 10.0)) == pytest.approx(50.0)  # explicit references win
    with pytest.raises(ValueError, match="random == expert"):
        d(1.0, "Hopper-v5", (2.0, 2.0))
    with pytest.raises(TypeError, match="env_id must be a str"):
        d(1.0, None)


def test_loader_takes_d4rl_references_from_metadata_else_the_table(hopper_random):
    """Older local and official Minari datasets lack the d4rl_* keys: the env family's table entry."""
    _, info = load_dataset(hopper_random)  # made by make_dataset: keys in the metadata
    assert (info.d4rl_ref_min_score, info.d4rl_ref_max_score) == (-20.272305, 3234.3)
    assert info.ref_min_score == pytest.approx(scores.RANDOM_RETURNS_V5["Hopper-v5"][0])  # dataset scale kept

    old = _copy_dataset(hopper_random, "test/hopper/no-d4rl-keys-v0")
    meta = json.loads((old / "metadata.json").read_text())
    for key in ("d4rl_ref_min_score", "d4rl_ref_max_score", "d4rl_ref_note"):
        del meta[key]
    (old / "metadata.json").write_text(json.dumps(meta))
    _, info_old = load_dataset("test/hopper/no-d4rl-keys-v0")
    assert (info_old.d4rl_ref_min_score, info_old.d4rl_ref_max_score) == (-20.272305, 3234.3)
    assert info_old.ref_min_score == info.ref_min_score and info_old.ref_max_score == info.ref_max_score

    custom = _copy_dataset(hopper_random, "test/hopper/custom-d4rl-keys-v0")
    _set_metadata(custom, d4rl_ref_min_score=0.0, d4rl_ref_max_score=1000.0)
    _, info_custom = load_dataset("test/hopper/custom-d4rl-keys-v0")
    assert (info_custom.d4rl_ref_min_score, info_custom.d4rl_ref_max_score) == (0.0, 1000.0)


# --- refusals -----------------------------------------------------------------------------------


def test_missing_dataset_names_both_fixes(minari_root):
    with pytest.raises(DatasetError) as e:
        load_dataset("ampl/hopper/nothing-v0")
    msg = str(e.value)
    assert "\n" not in msg and minari_root in msg
    assert "--config.dataset.download=True" in msg
    assert "python -m ampl_jax.datagen.make_dataset --env=Hopper-v5 --policy=random" in msg
    assert "--dataset-id=ampl/hopper/nothing-v0" in msg


def test_store_resolved_at_call_time(hopper_random, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DatasetError, match=str(tmp_path)):
        load_dataset(hopper_random)


def test_malformed_id_refused(minari_root):
    with pytest.raises(DatasetError, match="malformed dataset id"):
        load_dataset("no version here")


def test_nan_refused(hopper_random):
    data_dir = _copy_dataset(hopper_random, "test/nan/obs-v0")
    with h5py.File(data_dir / "main_data.hdf5", "a") as f:
        obs = f["episode_2/observations"]
        obs[1, 0] = np.nan
        obs[2, 3] = np.inf
    with pytest.raises(DatasetError, match="2 non-finite.*observations"):
        load_dataset("test/nan/obs-v0")

    data_dir = _copy_dataset(hopper_random, "test/nan/rew-v0")
    with h5py.File(data_dir / "main_data.hdf5", "a") as f:
        f["episode_0/rewards"][0] = np.nan
    with pytest.raises(DatasetError, match="1 non-finite.*rewards"):
        load_dataset("test/nan/rew-v0")


def test_shape_mismatch_refused(hopper_random):
    from minari.serialization import serialize_space

    data_dir = _copy_dataset(hopper_random, "test/shape/obs-v0")
    _set_metadata(data_dir, observation_space=serialize_space(gymnasium.spaces.Box(-np.inf, np.inf, (5,))))
    with pytest.raises(DatasetError, match=r"observations have shape \(\d+, 11\), expected \(\d+, 5\)"):
        load_dataset("test/shape/obs-v0")


def test_non_box_space_refused(hopper_random):
    from minari.serialization import serialize_space

    data_dir = _copy_dataset(hopper_random, "test/space/discrete-v0")
    _set_metadata(data_dir, action_space=serialize_space(gymnasium.spaces.Discrete(3)))
    with pytest.raises(DatasetError, match="action space Discrete.*1-D Box"):
        load_dataset("test/space/discrete-v0")


def test_corrupted_file_refused(hopper_random):
    data_dir = _copy_dataset(hopper_random, "test/corrupt/file-v0")
    (data_dir / "main_data.hdf5").write_bytes(b"this is not hdf5" * 64)
    with pytest.raises(DatasetError, match="unreadable.*delete that directory") as e:
        load_dataset("test/corrupt/file-v0")
    assert str(data_dir.parent) in str(e.value)


# --- creation -----------------------------------------------------------------------------------


def test_make_dataset_refuses_to_overwrite(hopper_random, minari_root):
    with pytest.raises(DatasetError, match="already exists.*--overwrite"):
        make_dataset("Hopper-v5", "random", 50, 0, hopper_random, progress=False)
    make_dataset("Hopper-v5", "random", 40, 0, "test/over/write-v0", ref_episodes=1, progress=False)
    make_dataset(
        "Hopper-v5", "random", 60, 0, "test/over/write-v0", ref_episodes=1, progress=False, overwrite=True
    )
    assert load_dataset("test/over/write-v0")[1].num_transitions == 60


def test_make_dataset_is_reproducible(minari_root):
    for k in ("a", "b"):
        make_dataset("Hopper-v5", "random", 80, 3, f"test/repro/{k}-v0", ref_episodes=2, progress=False)
    da, ia = load_dataset("test/repro/a-v0")
    db, ib = load_dataset("test/repro/b-v0")
    for x, y in zip(da, db):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert ia.ref_min_score == ib.ref_min_score


def test_unknown_policy_is_clear(minari_root):
    env = gymnasium.make("Hopper-v5")
    known = "unknown behaviour policy 'greedy'; available: expert, medium, random"
    with pytest.raises(policies.PolicyError, match=known):
        policies.make_policy("greedy", env, 0)
    with pytest.raises(policies.PolicyError, match="no 'expert' behaviour policy is shipped for InvertedPendulum-v5"):
        policies.make_policy("expert", gymnasium.make("InvertedPendulum-v5"), 0)
    with pytest.raises(policies.PolicyError, match="unknown behaviour policy"):
        make_dataset("Hopper-v5", "greedy", 10, 0, "test/policy/unknown-v0", progress=False)
    assert not dataset_path("test/policy/unknown-v0").exists()


def test_random_policy_is_seeded_and_in_bounds():
    env = gymnasium.make("Hopper-v5")
    obs = np.zeros(11)
    a = [policies.make_policy("random", env, 7)(obs) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    pi = policies.make_policy("random", env, 7)
    acts = np.stack([pi(obs) for _ in range(200)])
    assert acts.shape == (200, 3) and np.all(np.abs(acts) <= 1.0) and acts.std() > 0.3


def _cli(args: list[str], root: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINARI_DATASETS_PATH=root, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "ampl_jax.datagen.make_dataset", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_cli_creates_a_dataset(minari_root):
    args = ["--env=Hopper-v5", "--policy=random", "--steps=200", "--seed=1",
            "--dataset-id=test/cli/hopper-v0", "--ref_episodes=2", "--noprogress"]
    proc = _cli(args, minari_root)
    assert proc.returncode == 0, proc.stderr
    data, info = load_dataset("test/cli/hopper-v0")
    assert info.num_transitions == 200 and info.env_id == "Hopper-v5"


def test_cli_errors_are_one_line(minari_root):
    for args, expected in (
        (["--env=NoSuchEnv-v0", "--steps=10", "--dataset-id=test/cli/bad-v0"], "unknown Gymnasium environment"),
        (["--env=Hopper-v5", "--steps=10", "--dataset-id=no version"], "malformed dataset id"),
        (["--env=InvertedPendulum-v5", "--steps=10", "--policy=medium", "--dataset-id=test/cli/m-v0"],
         "no 'medium' behaviour policy is shipped"),
    ):
        proc = _cli(args, minari_root)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr and expected in proc.stderr
        assert len([line for line in proc.stderr.splitlines() if "error" in line]) == 1

