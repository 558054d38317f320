"""The committable SAC mirror: a run rebuilt from it on a fresh machine goes on bit for bit."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from ampl_jax.datagen import mirror as mirror_lib
from ampl_jax.datagen.sac import SACConfig
from ampl_jax.datagen.train_sac import choose_snapshots, train

TINY = SACConfig(hidden_dims=(32, 32), batch_size=64)
KW = dict(config=TINY, start_steps=300, eval_every=300, eval_episodes=2, checkpoint_every=300, log=None)
ENV = "InvertedPendulum-v5"


def _strip(evals):
    return [{k: v for k, v in e.items() if k != "wall_s"} for e in evals]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    whole = train(ENV, 900, 5, workdir=root / "whole", **KW)
    first = train(ENV, 600, 5, workdir=root / "first", mirror=root / "m", **KW)
    return root, whole, first


def test_mirror_holds_actions_state_and_evals_only(runs):
    root, _, first = runs
    m = root / "m"
    assert mirror_lib.mirror_step(m) == 600
    assert sorted(int(f.stem) for f in (m / "actions").glob("*.npz")) == [300, 600]
    with np.load(m / "actions" / "600.npz") as z:
        assert int(z["start"]) == 300 and z["act"].shape == (300, 1)
        np.testing.assert_array_equal(z["act"], first.replay.act[300:600])
    assert sorted(int(f.stem) for f in (m / "evals").glob("*.msgpack")) == [300, 600]
    assert json.loads((m / "run.json").read_text())["seed"] == 5


def test_run_restored_from_mirror_equals_uninterrupted(runs):
    root, whole, _ = runs
    fresh = root / "fresh"  # a new machine: no run folder, only the mirror
    resumed = train(ENV, 900, 5, workdir=fresh, mirror=root / "m", **KW)
    assert _strip(resumed.evaluations) == _strip(whole.evaluations)
    for k in ("obs", "act", "rew", "next_obs", "term", "trunc"):
        np.testing.assert_array_equal(getattr(resumed.replay, k), getattr(whole.replay, k))
    for x, y in zip(jax.tree.leaves(resumed.params[900]), jax.tree.leaves(whole.params[900])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert mirror_lib.mirror_step(root / "m") == 900  # and the mirror followed the resumed run


def test_broken_mirror_is_refused_or_reported(runs, tmp_path):
    root, _, _ = runs
    m = tmp_path / "m"
    shutil.copytree(root / "m", m)
    # A slightly different last action of a chunk (its step cuts the episode, so the episodes stay
    # the same) re-simulates other bits, as another MuJoCo build might: restored, chunk named.
    f = m / "actions" / "300.npz"
    with np.load(f) as z:
        parts = {k: z[k] for k in z.files}
    parts["act"] = parts["act"].copy()
    parts["act"][-1] = np.clip(parts["act"][-1] + 0.01, -1.0, 0.99)
    np.savez(f, **parts)
    with pytest.warns(UserWarning, match="re-simulate with different bits"):
        mirror_lib.restore(m, tmp_path / "w1", log=None)
    # A learner newer than the bookkeeping (copied mid-export) is refused.
    extra = json.loads((m / "extra.json").read_text())
    (m / "extra.json").write_text(json.dumps(dict(extra, step=300)))
    with pytest.raises(mirror_lib.MirrorError, match="different checkpoints"):
        mirror_lib.restore(m, tmp_path / "w3", log=None)
    with pytest.raises(mirror_lib.MirrorError, match="different checkpoints"):
        mirror_lib.check(m)
    (m / "extra.json").write_text(json.dumps(extra))
    assert mirror_lib.check(m) == extra["step"]
    # A missing chunk is an error naming the gap; nothing is written.
    f.unlink()
    with pytest.raises(mirror_lib.MirrorError, match="missing steps 0..300"):
        mirror_lib.check(m)
    with pytest.raises(mirror_lib.MirrorError, match="missing steps 0..300"):
        mirror_lib.restore(m, tmp_path / "w2", log=None)
    assert not (tmp_path / "w2").exists()


def test_gradient_steps_match_the_trainer(runs):
    from flax import serialization

    m = runs[0] / "m"
    learner = serialization.msgpack_restore((m / "state.msgpack").read_bytes())
    assert int(learner["step"]) == mirror_lib.gradient_steps(mirror_lib.mirror_step(m), KW["start_steps"], 50) > 0
    assert mirror_lib.gradient_steps(200_000, 5000, 50) == 195_050  # a Hopper mirror's learner at 200k
    assert mirror_lib.gradient_steps(4999, 5000, 50) == 0


def test_mirrored_evals_keep_early_ones_and_each_new_best():
    means = [(100, 5.0), (200, 50.0), (300, 30.0), (400, 60.0), (500, 55.0), (600, 70.0)]
    evals = [{"step": s, "mean": m} for s, m in means]
    assert mirror_lib._mirrored_eval_steps(evals, keep_all_until=300) == [100, 200, 300, 400, 600]
    # The medium snapshot is chosen among kept actors only: 1/3 of 70 is nearest 30 (kept).
    assert choose_snapshots(evals, available={100, 200, 300, 400, 600}) == {"expert": 600, "medium": 300}
    assert choose_snapshots(evals, available={100, 200, 400, 600})["medium"] == 100  # 5 is nearest 23.3


def test_medium_replay_regenerated_from_the_mirror(runs, tmp_path, monkeypatch):
    """A mirror in the SAC state folder replaces the shipped npz: the buffer comes back bit for bit."""
    import warnings

    import gymnasium

    from ampl_jax.datagen import snapshots
    from ampl_jax.datagen.train_sac import ship

    root, _, first = runs
    monkeypatch.setenv(snapshots.SAC_STATE_ENV, str(root))
    monkeypatch.setenv("AMPL_REPLAY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "snap"
    stale = snapshots.medium_replay_path(ENV, out)
    stale.parent.mkdir(parents=True)
    np.savez(stale, rewards=np.zeros(3))  # an older snapshot set's buffer
    metas = ship(first, ENV, out, "test", TINY, 5, final_episodes=2, mirror=root / "m")
    med = metas["medium"]
    n = med["replay_transitions"]
    assert med["replay_mirror"] == "m" and n == med["snapshot_env_steps"] and "replay_mirror" not in metas["expert"]
    assert not stale.exists()
    env = gymnasium.make(ENV)
    want = first.replay.episodes(n, env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the digest must match: no "differs" warning
        got = snapshots.load_replay(ENV, out)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    # Without the mirror (and nothing cached) the error says where it is expected and how to point there.
    monkeypatch.setenv("AMPL_REPLAY_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setenv(snapshots.SAC_STATE_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(snapshots.SnapshotError, match=r"not here: set \$AMPL_SAC_STATE to the folder that holds m "):
        snapshots.load_replay(ENV, out)


def test_replay_prefix_mid_chunk(runs):
    root, _, first = runs
    replay, inexact = mirror_lib.replay_prefix(root / "m", 450)  # inside the 300..600 chunk
    assert replay.size == 450 and inexact == []
    for k in ("obs", "act", "rew", "next_obs", "term", "trunc"):
        np.testing.assert_array_equal(getattr(replay, k)[:450], getattr(first.replay, k)[:450])
    with pytest.raises(mirror_lib.MirrorError, match="cannot rebuild the replay as of step"):
        mirror_lib.replay_prefix(root / "m", 10**6)
