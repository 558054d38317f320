"""The SAC curve summary the README's behaviour-policy table is read from."""

import json

import pytest

from ampl_jax.datagen import curves


def _curve(tmp_path, evaluations, env_id="Hopper-v5"):
    path = tmp_path / "sac" / f"{env_id}-s0.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"env_id": env_id, "seed": 0, "steps": 1_000_000, "cpu": "test",
                                "evaluations": evaluations}))
    return str(path)


def test_summary_best_goal_and_wall_rate(tmp_path):
    ev = [{"step": 10_000 * k, "mean": m, "std": 5.0, "det_mean": d, "det_std": 1.0, "wall_s": 100.0 * k + 7}
          for k, (m, d) in enumerate([(200, 210), (900, 880), (3100, 2900), (2000, 3300)], start=1)]
    r = curves.summarize(curves.load_curve(_curve(tmp_path, ev)))
    assert (r["best_step"], r["best_mean"]) == (30_000, 3100)
    assert (r["best_det_step"], r["best_det_mean"]) == (40_000, 3300)
    assert r["goal"] == 3000 and r["d4rl_expert"] == pytest.approx(3234.3)
    assert r["wall_s_per_100k"] == pytest.approx(1000.0)  # 100 s per 10k steps
    assert r["steps_done"] == 40_000 and r["label"] == ""
    table = curves.to_markdown([r])
    assert "3,100 ± 5 at 30k" in table and "3,300 at 40k" in table


def test_plot_writes_png_and_empty_curve_is_an_error(tmp_path):
    ev = [{"step": 10_000 * k, "mean": 100.0 * k, "std": 1.0, "det_mean": 90.0 * k, "det_std": 1.0,
           "wall_s": 50.0 * k} for k in range(1, 4)]
    png = tmp_path / "c.png"
    curves.plot([curves.load_curve(_curve(tmp_path, ev)), curves.load_curve(_curve(tmp_path, ev, "Walker2d-v5"))],
                str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no evaluations"):
        curves.load_curve(_curve(tmp_path, [], "HalfCheetah-v5"))
