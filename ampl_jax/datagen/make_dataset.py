"""Create a D4RL-style Minari dataset locally from a behaviour policy in the real Gymnasium env.

    python -m ampl_jax.datagen.make_dataset --env=Walker2d-v5 --policy=medium --steps=1000000 \\
        --dataset-id=ampl/walker2d/medium-v0

Why: published datasets cannot always be downloaded (offline machines, tests). The families
follow D4RL: random (uniform actions), medium and expert (the shipped SAC snapshots, sampling
their stochastic tanh-Gaussian), medium-replay (the shipped SAC replay buffer up to the medium
snapshot) and medium-expert (the first half of the steps from medium, the rest from expert).
Exactly `steps` transitions are recorded (medium-replay: at most the buffer's size); an episode
cut by the budget is stored as a truncation, never a termination, and so is the env's time limit.
Reference scores go into the metadata: ref_min_score = mean return of the uniform random policy
(100 episodes on v5, cached in ampl_jax/data/scores.py), ref_max_score = mean return of the
shipped expert snapshot (its stochastic policy, from the snapshot's JSON sidecar). Where D4RL scored
the env family (hopper, walker2d, halfcheetah, ant), the metadata also carries D4RL's v2 random and
expert returns as d4rl_ref_min_score / d4rl_ref_max_score, with d4rl_ref_note saying that they are
v2 numbers while the env is v5: a second, approximate, scale comparable with published tables.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from ampl_jax.data import scores
from ampl_jax.data.load import DatasetError, check_dataset_id, dataset_path
from ampl_jax.datagen.policies import POLICIES, Policy, PolicyError, make_policy

# Dataset families that are not a single policy: built from shipped snapshots / buffers.
COMPOSITE_FAMILIES: tuple[str, ...] = ("medium-replay", "medium-expert")


def families() -> list[str]:
    return sorted(POLICIES) + list(COMPOSITE_FAMILIES)


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


def reference_min(env_id: str, episodes: int, seed: int) -> tuple[float, str, int]:
    """(ref_min_score, how it was obtained, episodes): the cached v5 value, else measured now."""
    cached = scores.random_return_v5(env_id)
    if cached is not None:
        n = scores.RANDOM_RETURN_EPISODES
        return cached, f"mean return of the uniform random policy over {n} episodes (cached)", n
    how = f"mean return of the uniform random policy over {episodes} episodes (seed {seed})"
    return random_return(env_id, episodes, seed), how, episodes


def reference_max(env_id: str) -> tuple[float | None, str]:
    """(ref_max_score, how): the shipped expert's return, else D4RL's expert reference, else None."""
    from ampl_jax.datagen.snapshots import SnapshotError, load_snapshot

    try:
        expert = load_snapshot(env_id, "expert")
    except SnapshotError:
        table = scores.reference_scores(env_id)
        if table is None:
            return None, "none (no shipped expert, no table entry)"
        return table[1], "D4RL expert reference (ampl_jax/data/scores.py; no shipped expert)"
    m = expert.meta
    return expert.return_mean, (
        f"mean return of the shipped expert snapshot (stochastic policy, {m['eval_episodes']} "
        f"episodes: {m['stochastic_return_mean']:.1f} +- {m['stochastic_return_std']:.1f})"
    )


def _snapshot_note(env_id: str, name: str) -> str:
    from ampl_jax.datagen.snapshots import load_snapshot

    m = load_snapshot(env_id, name).meta
    return (
        f"'{name}' = SAC snapshot after {m['snapshot_env_steps']} of {m['training_env_steps']} "
        f"training steps, return {m['stochastic_return_mean']:.1f} +- {m['stochastic_return_std']:.1f} "
        f"(stochastic, {m['eval_episodes']} episodes)"
    )


def _collect(
    env: gymnasium.Env,
    act: Policy,
    steps: int,
    episode_seeds: np.random.Generator,
    progress: bool,
    desc: str,
    first_id: int = 0,
) -> list:
    """Step `act` for exactly `steps` transitions into Minari episode buffers, kept in memory.

    The episodes are written in one go afterwards: minari.DataCollector reopens its HDF5 file at
    every episode end, at a cost that grows with the episodes already written (a 1M-step random
    hopper dataset, ~50k episodes, had not finished after 8 minutes). Same layout as the
    collector's: each episode holds its states and its final next state, its reset seed, and the
    episode cut by the budget ends in a truncation.
    """
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from tqdm.auto import tqdm

    buffers: list = []
    seed = int(episode_seeds.integers(2**31))
    obs = [env.reset(seed=seed)[0]]
    acts: list = []
    rews: list[float] = []
    terms: list[bool] = []
    truncs: list[bool] = []
    for t in tqdm(range(steps), desc=desc, disable=not progress, unit="step"):
        a = act(obs[-1])
        o, r, terminated, truncated, _ = env.step(a)
        obs.append(o)
        acts.append(a)
        rews.append(float(r))
        terms.append(bool(terminated))
        truncs.append(bool(truncated or (t == steps - 1 and not terminated)))
        if terminated or truncated or t == steps - 1:
            buffers.append(EpisodeBuffer(
                id=first_id + len(buffers), seed=seed, observations=np.stack(obs), actions=np.stack(acts),
                rewards=rews, terminations=terms, truncations=truncs,
            ))
            if t < steps - 1:
                seed = int(episode_seeds.integers(2**31))
                obs, acts, rews, terms, truncs = [env.reset(seed=seed)[0]], [], [], [], []
    return buffers


def _replay_buffers(env_id: str, steps: int) -> tuple[list, int]:
    """The shipped medium-replay buffer as Minari EpisodeBuffers, cut to at most `steps` steps."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    from ampl_jax.datagen.snapshots import SnapshotError, load_replay

    try:
        z = load_replay(env_id)
    except SnapshotError as e:
        raise DatasetError(str(e)) from None
    buffers, t, o = [], 0, 0
    for n in z["lengths"]:
        n = int(n)
        take = min(n, steps - t)
        term = z["terminations"][t : t + take].copy()
        trunc = z["truncations"][t : t + take].copy()
        if take < n:  # cut by the budget: a truncation
            trunc[-1], term[-1] = True, False
        buffers.append(
            EpisodeBuffer(
                id=len(buffers),
                observations=z["observations"][o : o + take + 1],
                actions=z["actions"][t : t + take],
                rewards=z["rewards"][t : t + take].astype(np.float64).tolist(),
                terminations=term.tolist(),
                truncations=trunc.tolist(),
            )
        )
        t, o = t + n, o + n + 1
        if t >= steps:
            break
    return buffers, min(t, steps)


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
    """Collect `steps` transitions of the family `policy` in `env_id` as Minari `dataset_id`.

    Returns the dataset's directory in the local store (MINARI_DATASETS_PATH honoured).
    """
    import minari

    check_dataset_id(dataset_id)
    if steps < 1:
        raise DatasetError(f"--steps must be >= 1, got {steps}")
    if ref_episodes < 1:
        raise DatasetError(f"ref_episodes must be >= 1, got {ref_episodes}")
    if policy not in POLICIES and policy not in COMPOSITE_FAMILIES:
        raise PolicyError(f"unknown behaviour policy '{policy}'; available: {', '.join(families())}")
    path = dataset_path(dataset_id)
    if path.exists() and not overwrite:
        raise DatasetError(
            f"dataset '{dataset_id}' already exists at {path}: pass --overwrite to replace it, "
            "or choose another --dataset-id"
        )

    env = _make_env(env_id)
    # Build the policies (or read the buffer) first: a missing snapshot fails fast.
    if policy == "medium-expert":
        halves = [("medium", steps // 2, seed), ("expert", steps - steps // 2, seed + 1)]
        halves = [(name, n, make_policy(name, env, s)) for name, n, s in halves if n > 0]
    elif policy == "medium-replay":
        buffers, steps_written = _replay_buffers(env_id, steps)
    else:
        halves = [(policy, steps, make_policy(policy, env, seed))]
    ref_min, min_how, min_episodes = reference_min(env_id, ref_episodes, seed)
    ref_max, max_how = reference_max(env_id)
    command = (
        f"python -m ampl_jax.datagen.make_dataset --env={env_id} --policy={policy} "
        f"--steps={steps} --seed={seed} --dataset-id={dataset_id}"
    )
    extra: dict[str, Any] = {}
    with warnings.catch_warnings():
        # minari warns for every optional field left empty (permalink, email).
        warnings.filterwarnings("ignore", message=r".*is set to None.*")
        if policy == "medium-replay":
            how = (
                f"the replay buffer of the SAC run that produced the shipped medium snapshot, up to "
                f"that snapshot ({steps_written} transitions, {len(buffers)} episodes; "
                f"{_snapshot_note(env_id, 'medium')})"
            )
            algorithm = "SAC replay buffer (ampl_jax.datagen.train_sac)"
            extra["ampl_transitions"] = steps_written
        else:
            # Episode seeds from their own stream so they do not correlate with the policy's draws.
            episode_seeds = np.random.default_rng([seed, 1])
            buffers = []
            for name, n, act in halves:
                got = _collect(env, act, n, episode_seeds, progress, f"{dataset_id} [{name}]", len(buffers))
                extra[f"ampl_{name}_episodes"] = len(got)
                buffers += got
            notes = "; ".join(_snapshot_note(env_id, name) for name, _, _ in halves if name != "random")
            how = {
                "random": f"{steps} transitions of uniform random actions",
                "medium-expert": (
                    f"{halves[0][1]} transitions of the medium policy, then {steps - halves[0][1]} "
                    f"of the expert policy, each sampling its tanh-Gaussian"
                ),
            }.get(policy, f"{steps} transitions of the {policy} policy sampling its tanh-Gaussian")
            if notes:
                how += f" ({notes})"
            algorithm = f"{policy} behaviour policy (ampl_jax.datagen.policies)"
        if path.exists():  # overwrite: only now, after collection succeeded
            shutil.rmtree(path)
        dataset = minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env_id,
            eval_env=env_id,
            algorithm_name=algorithm,
            author="ampl-jax make_dataset",
            description=_description(policy, env_id, how, command, min_how, max_how),
        )
    # Stored after creation: minari itself would only record ref_min_score together with a
    # ref_max_score, and would re-estimate it with its own unseeded episode count.
    refs: dict[str, Any] = {"ref_min_score": ref_min, "num_episodes_average_score": min_episodes}
    if ref_max is not None:
        refs["ref_max_score"] = ref_max
    refs.update(d4rl_metadata(env_id))
    dataset.storage.update_metadata({**refs, **extra, "ampl_family": policy})
    env.close()
    return path


def d4rl_metadata(env_id: str) -> dict[str, Any]:
    """The D4RL-scale reference keys for a dataset of `env_id`; empty when D4RL has no such env."""
    table = scores.reference_scores(env_id)
    if table is None:
        return {}
    return {"d4rl_ref_min_score": table[0], "d4rl_ref_max_score": table[1], "d4rl_ref_note": scores.D4RL_SCALE_NOTE}


def _description(family: str, env_id: str, how: str, command: str, min_how: str, max_how: str) -> str:
    return (
        f"D4RL-style '{family}' dataset of {env_id}: {how}. Made by `{command}`. Episodes cut by "
        f"the time limit or the step budget are truncations, not terminations. ref_min_score: "
        f"{min_how}; ref_max_score: {max_how}."
    )


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
    flags.DEFINE_string(
        "policy", "random", "Dataset family: random, medium, expert, medium-replay, medium-expert."
    )
    flags.DEFINE_integer("steps", 20_000, "Number of transitions to record.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the policy and of the episode resets.")
    flags.DEFINE_string("dataset_id", None, "Minari id, e.g. ampl/hopper/random-v0.", required=True)
    flags.DEFINE_integer(
        "ref_episodes", 10, "Random-policy episodes for ref_min_score (envs without a cached value).",
        lower_bound=1,
    )
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
