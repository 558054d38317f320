"""`python -m ampl_jax.lab.bench`'s table: the authors' figures say when and where they were taken, a
side-by-side figure (--authors_its) replaces the ratio, and nothing cites a file outside the
repository (issue #32). Text only: no suite runs."""

from ampl_jax.lab import bench

UPDATE = {"fused_interleaved": {"iters_per_s": 30.0, "compile_s": 8.0}, "fused_no_miw": {"iters_per_s": 55.0, "compile_s": 6.0},
          "unfused_interleaved": {"iters_per_s": 22.0, "compile_s": 3.0}, "fused_speedup_vs_unfused": 1.3,
          "miw_steps_per_s": 60.0, "peer_iters_per_s_no_miw_h3": 16.1, "peer_miw_steps_per_s": 27.1,
          "ratio_no_miw_vs_peer": 55.0 / 16.1, "ratio_miw_vs_peer": 60.0 / 27.1, "peak_rss_mb": 2400.0}


def _table(authors_its):
    results = {"update": dict(UPDATE)}
    bench.authors_reference(results, authors_its)
    return results, bench.markdown(results)


def test_the_authors_figure_says_it_is_from_another_day_and_machine():
    results, text = _table(None)
    assert "peers.md" not in text and "shared/" not in text
    assert "2026-11-23" in text and "not beside this run" in text
    assert "3.42x (another day and machine)" in text
    assert results["authors"]["side_by_side"] is None


def test_a_side_by_side_figure_gives_the_ratio():
    results, text = _table(22.0)
    assert "| 22 (side by side, --authors_its) | 2.50x |" in text
    assert results["update"]["ratio_no_miw_vs_authors_side_by_side"] == 55.0 / 22.0
    assert results["authors"]["side_by_side"]["policy_iters_per_s"] == 22.0
