"""Create a Minari dataset locally by running a behaviour policy in the real Gymnasium env.

    python -m ampl_jax.data.make_dataset --env=Hopper-v5 --policy=random --steps=20000 \\
        --seed=0 --dataset-id=ampl/hopper/random-v0

Why: published datasets cannot always be downloaded (offline machines, tests), and quick starts
need a dataset of a known env. Exactly `steps` transitions are recorded; the episode cut by the
budget is stored as a truncation, never a termination. Reference scores go into the metadata:
ref_min_score = mean return of the uniform random policy, ref_max_score = the D4RL expert
reference of ampl_jax/data/scores.py (until the project ships its own expert policies).
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np

from ampl_jax.data import scores
from ampl_jax.data.load import DatasetError, check_dataset_id, dataset_path
from ampl_jax.data.policies import PolicyError, make_policy


def _make_env(env_id: str) -> gymnasium.Env:
    try:
        gymnasium.spec(env_id)
    except gymnasium.error.Error:
        raise DatasetError(
            f"unknown Gymnasium environment '{env_id}': use a registered id such as Hopper-v5 "
            "(see gymnasium.envs.registry)"
        ) from None
    try:
        return gymnasium.make(env_id)
    except Exception as e:  # missing mujoco, bad kwargs: one line, not a traceback
        raise DatasetError(f"cannot create environment '{env_id}' ({type(e).__name__}: {e})") from None


def random_return(env_id: str, episodes: int, seed: int) -> float:
    """Mean undiscounted return of the uniform random policy: the dataset's ref_min_score."""
    env = _make_env(env_id)
    policy = make_policy("random", env, seed)
    total = 0.0
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, r, terminated, truncated, _ = env.step(policy(obs))
                total += float(r)
                done = terminated or truncated
    finally:
        env.close()
    return total / episodes


def make_dataset(
    env_id: str,
    policy: str,
    steps: int,
    seed: int,
    dataset_id: str,
    *,
    ref_episodes: int = 10,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Collect `steps` transitions of `policy` in `env_id` and store them as Minari `dataset_id`.

    Returns the dataset's directory in the local store (MINARI_DATASETS_PATH honoured).
    """
    import minari
    from tqdm.auto import tqdm

    check_dataset_id(dataset_id)
    if steps < 1:
        raise DatasetError(f"--steps must be >= 1, got {steps}")
    if ref_episodes < 1:
        raise DatasetError(f"ref_episodes must be >= 1, got {ref_episodes}")
    path = dataset_path(dataset_id)
    if path.exists() and not overwrite:
        raise DatasetError(
            f"dataset '{dataset_id}' already exists at {path}: pass --overwrite to replace it, "
            "or choose another --dataset-id"
        )

    env = _make_env(env_id)
    act = make_policy(policy, env, seed)  # before collecting: an unknown policy fails fast
    ref_min = random_return(env_id, ref_episodes, seed)
    ref_max = (scores.reference_scores(env_id) or (None, None))[1]

    # Episode seeds from their own stream so they do not correlate with the policy's draws.
    episode_seeds = np.random.default_rng([seed, 1])
    collector = minari.DataCollector(env, record_infos=False)
    try:
        obs, _ = collector.reset(seed=int(episode_seeds.integers(2**31)))
        for t in tqdm(range(steps), desc=f"collecting {dataset_id}", disable=not progress, unit="step"):
            obs, _, terminated, truncated, _ = collector.step(act(obs))
            # No reset after the last step: the open episode is flushed as truncated on save.
            if (terminated or truncated) and t < steps - 1:
                obs, _ = collector.reset(seed=int(episode_seeds.integers(2**31)))

        if path.exists():  # overwrite: only now, after collection succeeded
            shutil.rmtree(path)
        command = (
            f"python -m ampl_jax.data.make_dataset --env={env_id} --policy={policy} "
            f"--steps={steps} --seed={seed} --dataset-id={dataset_id}"
        )
        with warnings.catch_warnings():
            # minari warns for every optional field left empty (permalink, email).
            warnings.filterwarnings("ignore", message=r".*is set to None.*")
            dataset = collector.create_dataset(
                dataset_id=dataset_id,
                eval_env=env_id,
                algorithm_name=f"{policy} behaviour policy (ampl_jax.data.policies)",
                author="ampl-jax make_dataset",
                description=(
                    f"{steps} transitions of the '{policy}' policy in {env_id}, seed {seed}, made by "
                    f"`{command}`. ref_min_score: mean return of the uniform random policy over "
                    f"{ref_episodes} episodes; ref_max_score: D4RL expert reference "
                    "(ampl_jax/data/scores.py)."
                ),
            )
        # Stored after creation: minari itself would only record ref_min_score together with a
        # ref_max_score, and would re-estimate it with its own unseeded episode count.
        refs = {"ref_min_score": ref_min, "num_episodes_average_score": ref_episodes}
        if ref_max is not None:
            refs["ref_max_score"] = ref_max
        dataset.storage.update_metadata(refs)
    finally:
        collector.close()
    return path


def main(argv: list[str]) -> None:
    """absl entry point: one clear line and exit status 1 on any user error."""
    from absl import flags

    del argv
    f = flags.FLAGS
    try:
        path = make_dataset(
            f.env,
            f.policy,
            f.steps,
            f.seed,
            f.dataset_id,
            ref_episodes=f.ref_episodes,
            progress=f.progress,
            overwrite=f.overwrite,
        )
    except (DatasetError, PolicyError) as e:
        print(f"make_dataset: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"dataset '{f.dataset_id}' written to {path}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("env", None, "Gymnasium environment id, e.g. Hopper-v5.", required=True)
    flags.DEFINE_string("policy", "random", "Behaviour policy (ampl_jax.data.policies).")
    flags.DEFINE_integer("steps", 20_000, "Number of transitions to record.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the policy and of the episode resets.")
    flags.DEFINE_string("dataset_id", None, "Minari id, e.g. ampl/hopper/random-v0.", required=True)
    flags.DEFINE_integer("ref_episodes", 10, "Random-policy episodes for ref_min_score.", lower_bound=1)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing dataset with the same id.")
    flags.DEFINE_boolean("progress", True, "Show a progress bar.")


def _parse_flags(argv: list[str]) -> list[str]:
    """absl parser that also accepts hyphenated names (--dataset-id as well as --dataset_id)."""
    from absl import flags

    def underscored(arg: str) -> str:
        if not arg.startswith("--"):
            return arg
        name, sep, value = arg[2:].partition("=")
        return "--" + name.replace("-", "_") + sep + value

    return flags.FLAGS([argv[0]] + [underscored(a) for a in argv[1:]])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main, flags_parser=_parse_flags)
