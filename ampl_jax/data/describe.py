"""What a dataset's behaviour achieved: its episodes' returns on the raw, dataset and D4RL scales.

    python -m ampl_jax.data.describe ampl/hopper/medium-v0 ampl/hopper/medium-replay-v0 --out_file=t.json

Why: a dataset family's name promises a level of play ("medium" = about a third of the expert);
this says what the data holds, on the scale the dataset defines (its ref_min/ref_max) and on
D4RL's v2 scale, so that data made here can be set beside D4RL's published dataset returns.
Every episode counts, including the one cut by the step budget (`complete_only` leaves that
one out: it is often short, and so its return is low).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ampl_jax.cli import markdown_table, run_cli
from ampl_jax.data.load import check_dataset_id, dataset_path


def describe(dataset_id: str, complete_only: bool = False) -> dict:
    """Episode count, transitions, return mean/std, mean length and both normalised scores."""
    from ampl_jax.data.load import read_minari, load_dataset
    from ampl_jax.data.scores import evaluation_scores

    check_dataset_id(dataset_id)
    _, info = load_dataset(dataset_id)  # validates the data and resolves both score scales
    _, episodes, metadata = read_minari(dataset_id, dataset_path(dataset_id) / "data")
    episodes = [ep for ep in episodes if len(ep["rewards"]) > 0]
    if complete_only and len(episodes) > 1:
        last = episodes[-1]
        if not bool(np.asarray(last["terminations"])[-1]) and len(last["rewards"]) < _time_limit(info.env_id):
            episodes = episodes[:-1]
    returns = np.array([float(np.sum(ep["rewards"])) for ep in episodes])
    lengths = np.array([len(ep["rewards"]) for ep in episodes])
    scores = evaluation_scores(float(returns.mean()), float(returns.std()), info)
    return {
        "dataset_id": dataset_id,
        "env_id": info.env_id,
        "family": metadata.get("ampl_family"),
        "episodes": int(len(episodes)),
        "transitions": int(lengths.sum()),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "mean_length": float(lengths.mean()),
        "terminated_fraction": float(np.mean([bool(np.asarray(ep["terminations"])[-1]) for ep in episodes])),
        "normalized_score": scores["normalized_score"],
        "d4rl_normalized_score": scores["d4rl_normalized_score"],
        "ref_min_score": info.ref_min_score,
        "ref_max_score": info.ref_max_score,
    }


def _time_limit(env_id: str) -> int:
    import gymnasium

    return int(gymnasium.spec(env_id).max_episode_steps or 10**9)


def to_markdown(rows: Sequence[dict]) -> str:
    header = ["dataset", "episodes", "transitions", "return per episode (mean ± std)", "mean length",
              "score, dataset scale", "score, D4RL v2 scale"]
    return markdown_table(header, [
        [r["dataset_id"], r["episodes"], r["transitions"], f"{r['return_mean']:.1f} ± {r['return_std']:.1f}",
         f"{r['mean_length']:.0f}", f"{r['normalized_score']:.1f}", f"{r['d4rl_normalized_score']:.1f}"] for r in rows])


def main(argv: list[str]) -> None:
    from absl import flags

    if len(argv) < 2:
        raise SystemExit("usage: python -m ampl_jax.data.describe DATASET_ID [...] [--out_file=F] [--complete_only]")
    run_cli(lambda: [describe(d, flags.FLAGS.complete_only) for d in argv[1:]], to_markdown, flags.FLAGS.out_file)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("out_file", "", "Also write the rows as JSON here.")
    flags.DEFINE_boolean("complete_only", False, "Leave out the last episode if the step budget cut it.")
    app.run(main)
