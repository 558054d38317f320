"""Checkpoint building blocks, in process: orbax round trip, keep, fingerprint, fallback, the
divergence guard, exact accumulator state, log truncation, config comparison, repro diffs."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax import checkpoint, repro, rundir, train
from ampl_jax.config import validation as configuration
from ampl_jax.metrics import MeanAccumulator, truncate_jsonl
from configs import default


def _tree(scale: float = 1.0):
    return {
        "params": {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3) * scale, "b": jnp.ones((3,), jnp.float32)},
        "opt": (jnp.zeros((), jnp.int32), {"mu": jnp.full((2,), 0.5, jnp.float32)}),
        "key": jax.random.PRNGKey(3),
        "step": jnp.asarray(8, jnp.int32),
        "aux": {},  # e.g. TrainState.miw_aux under TD-DICE: a node without leaves
    }


def _bitwise_equal(a, b) -> bool:
    return repro.first_leaf_difference(a, b) is None


def test_keep_steps_are_kept_beside_the_newest(tmp_path):
    """checkpoint.keep_steps: the long protocol keeps 40k/100k/200k for critic_check while keep=3
    rotates the others; a reopened manager keeps them too."""
    with checkpoint.Checkpoints(str(tmp_path), keep=2, keep_steps=(20, 40)) as ck:
        for step in range(10, 70, 10):
            ck.save(step, _tree(step), {})
        assert ck.steps() == [20, 40, 50, 60]
    with checkpoint.Checkpoints(str(tmp_path), keep=2, keep_steps=(20, 40)) as ck:
        ck.save(70, _tree(70.0), {})
        assert ck.steps() == [20, 40, 60, 70]
    c = default.get_config()
    c.checkpoint.keep_steps = (40_000, -1)
    with pytest.raises(configuration.ConfigError, match="keep_steps"):
        configuration.validate(c)


def test_save_restore_keep_and_extra(tmp_path):
    with checkpoint.Checkpoints(str(tmp_path), keep=2) as ck:
        for step in (0, 4, 8):
            ck.save(step, _tree(step + 1.0), {"pending_metrics": {"loss": [0.1, 0.2]}, "last_eval": {}})
        assert ck.steps() == [4, 8]
        state, extra = ck.restore(8, _tree())
    assert _bitwise_equal(state, _tree(9.0))
    assert type(state["opt"]) is tuple and state["key"].dtype == jnp.uint32
    assert extra["pending_metrics"] == {"loss": [0.1, 0.2]} and extra["step"] == 8
    assert extra["fingerprint"] == checkpoint.fingerprint(_tree(9.0))
    assert checkpoint.read_extra(str(tmp_path))["step"] == 8


def test_altered_newest_checkpoint_falls_back_and_is_moved_aside(tmp_path):
    with checkpoint.Checkpoints(str(tmp_path), keep=3) as ck:
        for step in (4, 8):
            ck.save(step, _tree(step), {})
    meta = tmp_path / "checkpoints" / "8" / "extra" / "metadata"
    extra = json.loads(meta.read_text())
    extra["fingerprint"] = "0" * 64  # bytes that still parse but are not what was saved
    meta.write_text(json.dumps(extra))
    warnings = []
    with checkpoint.Checkpoints(str(tmp_path), keep=3) as ck:
        step, state, _ = ck.restore_latest(_tree(), warnings.append)
        assert step == 4 and _bitwise_equal(state, _tree(4))
        assert ck.steps() == [4]
        ck.save(8, _tree(8), {})  # the step can be saved again
    assert len(warnings) == 1 and "step 8 is unreadable" in warnings[0] and "resuming from step 4" in warnings[0]
    assert [p.name.split("-")[0] for p in (tmp_path / checkpoint.CORRUPT_DIR).iterdir()] == ["8"]


def test_no_loadable_checkpoint_raises_and_moves_nothing(tmp_path):
    with checkpoint.Checkpoints(str(tmp_path), keep=3) as ck:
        ck.save(4, _tree(), {})
    for f in (tmp_path / "checkpoints" / "4" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"junk")
    with checkpoint.Checkpoints(str(tmp_path), keep=3) as ck:
        with pytest.raises(checkpoint.CheckpointError, match="no checkpoint .* can be loaded.*--overwrite"):
            ck.restore_latest(_tree(), lambda msg: None)
    assert checkpoint.list_steps(str(tmp_path)) == [4]
    assert not (tmp_path / checkpoint.CORRUPT_DIR).exists()


def test_empty_directory_restores_nothing(tmp_path):
    with checkpoint.Checkpoints(str(tmp_path), keep=1) as ck:
        assert ck.restore_latest(_tree()) is None


def test_nonfinite_check_names_the_leaf():
    tree = _tree()
    check = train.make_nonfinite_check(tree)
    assert check(tree) == []
    bad = {**tree, "params": {**tree["params"], "b": tree["params"]["b"].at[1].set(jnp.inf)}}
    assert check(bad) == ["params/b"]


def test_nonfinite_loss_stops_with_its_name_and_the_last_good_checkpoint():
    train._check_finite({"critic_loss": 0.5, "actor_loss": -1.0}, 8, "x")
    with pytest.raises(train.TrainingError, match=r"non-finite actor_loss, critic_loss at step 16: .*; "
                                                   r"the last good checkpoint \(step 12\)"):
        train._check_finite({"critic_loss": float("nan"), "actor_loss": float("inf")}, 16,
                            "the last good checkpoint (step 12) in /w/checkpoints is intact")


def test_mean_accumulator_state_round_trip_is_exact():
    rng = np.random.default_rng(0)
    acc = MeanAccumulator()
    for _ in range(5):
        acc.add({"loss": float(rng.normal()), "vec": rng.normal(size=3).astype(np.float32)})
    restored = MeanAccumulator.from_state(json.loads(json.dumps(acc.state())))
    a, b = acc.means(), restored.means()
    assert a.keys() == b.keys() and all(np.float64(a[k]).tobytes() == np.float64(b[k]).tobytes() for k in a)


def test_truncate_jsonl_keeps_steps_up_to(tmp_path):
    path = tmp_path / "fits.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": s * 0.5}) + "\n" for s in (0, 12, 24)) + '{"step": 3')
    assert truncate_jsonl(str(path), 12) == 2
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [0, 12]
    assert truncate_jsonl(str(path), -1) == 0 and path.read_text() == ""


def test_config_differences_allow_resumable_keys():
    old = configuration.to_dict(default.get_config())
    new_cfg = default.get_config()
    new_cfg.train.total_steps = 2_000_000
    new_cfg.checkpoint.every = 10
    assert configuration.differences(old, configuration.to_dict(new_cfg)) == []
    new_cfg.agent.hidden_dims = (64, 64)
    new_cfg.seed = 1
    assert configuration.differences(old, configuration.to_dict(new_cfg)) == [
        "agent.hidden_dims: [400, 300] -> [64, 64]", "seed: 0 -> 1"]


def test_clear_run_removes_only_run_files(tmp_path):
    for name in rundir.RUN_FILES:
        (tmp_path / name).write_text("x")
    for name in rundir.RUN_DIRS:
        (tmp_path / name / "sub").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    rundir.clear_run(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_repro_diffs_name_leaf_and_column(tmp_path):
    a = _tree()
    b = {**a, "opt": (a["opt"][0], {"mu": a["opt"][1]["mu"].at[0].set(np.nextafter(np.float32(0.5), np.float32(1)))})}
    assert repro.first_leaf_difference(a, b) == "opt/1/mu"
    header = "step,loss,wall_seconds\n"
    (tmp_path / "a.csv").write_text(header + "8,0.5,1.0\n16,0.25,2.0\n")
    (tmp_path / "b.csv").write_text(header + "8,0.5,9.0\n16,0.26,2.0\n")
    assert repro.first_metrics_difference(tmp_path / "a.csv", tmp_path / "b.csv") == ("16", "loss")
    (tmp_path / "b.csv").write_text(header + "8,0.5,9.0\n16,0.25,3.0\n")
    assert repro.first_metrics_difference(tmp_path / "a.csv", tmp_path / "b.csv") is None
