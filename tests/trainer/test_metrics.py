"""CSV/TensorBoard writer, resume truncation, plot, running means, atomic json."""

from __future__ import annotations

import csv
import glob
import json
import os
import stat

import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax.metrics import D4RL_COLUMN, MeanAccumulator, MetricsWriter, plot_learning_curve, write_json


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        return list(reader)


def test_csv_columns_and_rows(tmp_path):
    w = MetricsWriter(str(tmp_path))
    w.write(0, {"loss": 1.5, "normalized_score": np.float32(10.0)})
    w.write(1000, {"loss": jnp.asarray(0.25)})  # missing key -> empty cell
    w.write(2000, {"normalized_score": 12.5, "loss": 0.125})  # other order is fine
    with pytest.raises(ValueError, match="new_metric"):
        w.write(3000, {"new_metric": 1.0})
    with pytest.raises(ValueError, match="step"):
        w.write(3000, {"step": 1.0})
    w.close()
    rows = _rows(tmp_path / "metrics.csv")
    assert rows == [
        ["step", "loss", "normalized_score"],
        ["0", "1.5", "10.0"],
        ["1000", "0.25", ""],
        ["2000", "0.125", "12.5"],
    ]
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))


def test_fresh_run_replaces_old_csv(tmp_path):
    with MetricsWriter(str(tmp_path)) as w:
        w.write(0, {"a": 1.0})
    with MetricsWriter(str(tmp_path)) as w:
        w.write(5, {"b": 2.0})
    assert _rows(tmp_path / "metrics.csv") == [["step", "b"], ["5", "2.0"]]


def test_resume_truncates_exactly_after_step(tmp_path):
    with MetricsWriter(str(tmp_path)) as w:
        for step in range(0, 5000, 1000):
            w.write(step, {"a": float(step), "b": -float(step)})
    w = MetricsWriter(str(tmp_path), resume=True)
    assert w.columns == ["step", "a", "b"]
    assert w.truncate_after(2000) == 3
    w.write(3000, {"a": 30.0})
    w.close()
    rows = _rows(tmp_path / "metrics.csv")
    assert [r[0] for r in rows] == ["step", "0", "1000", "2000", "3000"]
    assert rows[-1] == ["3000", "30.0", ""]


def test_resume_of_an_older_csv_appends_the_new_column(tmp_path):
    """A run resumed from a metrics.csv written before d4rl_normalized_score existed (multi-seed rows)."""
    with MetricsWriter(str(tmp_path)) as w:
        for step in (8, 16):
            for seed in (0, 1):
                w.write(step, {"seed": seed, "normalized_score": float(step + seed)})
    w = MetricsWriter(str(tmp_path), resume=True)
    assert w.truncate_after(8) == 2
    assert w.add_columns([D4RL_COLUMN, "normalized_score"]) == [D4RL_COLUMN]  # only what is missing
    assert w.add_columns([D4RL_COLUMN]) == []
    for seed in (0, 1):
        w.write(16, {"seed": seed, "normalized_score": 16.0 + seed, D4RL_COLUMN: 5.0 + seed})
    w.close()
    assert _rows(tmp_path / "metrics.csv") == [
        ["step", "seed", "normalized_score", D4RL_COLUMN],  # old columns keep their place
        ["8", "0.0", "8.0", ""],
        ["8", "1.0", "9.0", ""],
        ["16", "0.0", "16.0", "5.0"],
        ["16", "1.0", "17.0", "6.0"],
    ]
    fresh = MetricsWriter(str(tmp_path / "fresh"))
    assert fresh.add_columns([D4RL_COLUMN]) == []  # before the first row: that row fixes the columns
    fresh.close()


def test_resume_without_csv_starts_fresh(tmp_path):
    w = MetricsWriter(str(tmp_path), resume=True)
    assert w.truncate_after(100) == 0
    w.write(200, {"a": 1.0})
    w.close()
    assert _rows(tmp_path / "metrics.csv") == [["step", "a"], ["200", "1.0"]]


def test_plot_learning_curve(tmp_path):
    with MetricsWriter(str(tmp_path)) as w:
        for step in range(5):
            scalars = {"loss": 1.0 / (step + 1)}
            if step % 2 == 0:
                scalars["normalized_score"] = float(step * 10)
            elif step == 3:
                scalars["normalized_score"] = float("nan")  # no reference scores: not plotted
            w.write(step, scalars)
    png = tmp_path / "plots" / "curve.png"
    n = plot_learning_curve(str(tmp_path / "metrics.csv"), str(png))
    assert n == 3  # rows with an empty score are skipped
    data = png.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nope"):
        plot_learning_curve(str(tmp_path / "metrics.csv"), str(png), y="nope")


def test_mean_accumulator():
    acc = MeanAccumulator()
    acc.add({"a": 1.0, "b": jnp.asarray(2.0)})
    acc.add({"a": jnp.asarray([2.0, 3.0, 4.0])})  # stacked by a scan: each element counts once
    m = acc.means()
    assert m == pytest.approx({"a": 2.5, "b": 2.0})
    assert acc.means() == {}
    acc.add({"a": np.float32(7.0)})
    assert acc.means() == {"a": 7.0}


def test_write_json_atomic(tmp_path):
    path = tmp_path / "sub" / "result.json"
    obj = {"score": np.float32(1.5), "returns": np.arange(3), "name": "x"}
    write_json(str(path), obj)
    assert path.read_text() == json.dumps(
        {"score": 1.5, "returns": [0, 1, 2], "name": "x"}, indent=2
    ) + "\n"
    write_json(str(path), [1, 2])
    assert json.loads(path.read_text()) == [1, 2]
    assert os.listdir(path.parent) == ["result.json"]  # no temporary left behind
    with pytest.raises(TypeError):
        write_json(str(path), {"bad": object()})
    assert json.loads(path.read_text()) == [1, 2]  # a failed write leaves the old file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_every_file_written_gets_the_mode_open_gives(tmp_path):
    """json (write_json), metrics.csv rewritten on resume, and the plot: as a plain open() makes
    them (0644 under umask 022), not tempfile's 0600."""
    from ampl_jax.metrics import FILE_MODE

    assert FILE_MODE == 0o666 & ~_umask()
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    plain = stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
    write_json(str(tmp_path / "config.json"), {"a": 1})
    with MetricsWriter(str(tmp_path)) as w:
        w.write(1, {"normalized_score": 1.0})
        w.write(2, {"normalized_score": 2.0})
    with MetricsWriter(str(tmp_path), resume=True) as w:
        w.truncate_after(1)  # rewritten atomically
    plot_learning_curve(str(tmp_path / "metrics.csv"), str(tmp_path / "learning_curve.png"))
    modes = {n: stat.S_IMODE(os.stat(tmp_path / n).st_mode) for n in ("config.json", "metrics.csv",
                                                                         "learning_curve.png")}
    assert set(modes.values()) == {plain}, {n: oct(m) for n, m in modes.items()}


def test_learning_curve_axis_names_the_score_scale(tmp_path):
    from ampl_jax.metrics import learning_curve_figure

    with MetricsWriter(str(tmp_path)) as w:
        for step in (1, 2):
            w.write(step, {"normalized_score": 10.0 * step, D4RL_COLUMN: 5.0 * step, "critic_loss": 1.0})
    labels = {y: learning_curve_figure(str(tmp_path / "metrics.csv"), y)[0].axes[0].get_ylabel()
              for y in ("normalized_score", D4RL_COLUMN, "critic_loss")}
    assert "dataset scale" in labels["normalized_score"] and "ref_max_score" in labels["normalized_score"]
    assert "D4RL v2 scale" in labels[D4RL_COLUMN] and "expert" in labels[D4RL_COLUMN]
    assert labels["critic_loss"] == "critic_loss"


@pytest.mark.parametrize("torn", ["3", "30", "3000,3", "3000,30.0,-3000.0"])
def test_resume_drops_a_row_torn_by_a_crash_mid_append(tmp_path, torn):
    """Issue #34: a kill during the append of step 3000's row leaves its line without a newline (and
    maybe without fields); on resume from checkpoint 2000 that row goes, even though its step
    field alone ("3") may read as <= 2000, and the rows before it stay."""
    with MetricsWriter(str(tmp_path)) as w:
        for step in range(0, 3000, 1000):
            w.write(step, {"a": float(step), "b": -float(step)})
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write(torn)
    w = MetricsWriter(str(tmp_path), resume=True)
    assert w.truncate_after(2000) == 3
    w.write(3000, {"a": 30.0, "b": -30.0})
    w.close()
    assert _rows(tmp_path / "metrics.csv") == [["step", "a", "b"], ["0", "0.0", "-0.0"], ["1000", "1000.0", "-1000.0"],
                                              ["2000", "2000.0", "-2000.0"], ["3000", "30.0", "-30.0"]]
