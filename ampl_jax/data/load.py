"""Minari dataset -> `OfflineData` (device arrays) + `DatasetInfo` (host metadata).

Minari stores N + 1 observations per episode of N steps, so s' is always the true next state,
also at a time-out. Only true terminations become `dones`; time-outs and the step budget of
`make_dataset` are truncations and leave done = 0 (bootstrapping continues through them).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import gymnasium
import jax.numpy as jnp
import numpy as np

from ampl_jax.data import preprocess, scores
from ampl_jax.types import DatasetInfo, OfflineData


class DatasetError(ValueError):
    """A dataset that is missing, unreadable or unusable; the message names the fix."""


class DatasetNotFoundError(DatasetError):
    """The dataset is not in the local store (and was not downloaded)."""


def dataset_path(dataset_id: str) -> Path:
    """Directory of `dataset_id` in the local store, resolved now (honours MINARI_DATASETS_PATH).

    Same rule as minari's own `get_dataset_path`, without its side effect of creating the root.
    """
    root = os.environ.get("MINARI_DATASETS_PATH") or os.path.join(
        os.path.expanduser("~"), ".minari", "datasets"
    )
    return Path(root) / dataset_id


def check_dataset_id(dataset_id: str) -> None:
    """Refuse ids minari cannot store: the form is (namespace/)name-vN, e.g. ampl/hopper/random-v0."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        _, _, version = parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        version = None
    if version is None:
        raise DatasetError(
            f"malformed dataset id '{dataset_id}': use (namespace/)name-vN, e.g. ampl/hopper/random-v0"
        )


def _missing_message(dataset_id: str, path: Path) -> str:
    env_hint = scores.default_env_id(dataset_id) or "<Gymnasium id, e.g. Hopper-v5>"
    return (
        f"dataset '{dataset_id}' is not in the local Minari store ({path}; set MINARI_DATASETS_PATH "
        "to use another store): download it with --config.dataset.download=True "
        "(minari.download_dataset), or create it with `python -m ampl_jax.datagen.make_dataset "
        f"--env={env_hint} --policy=random --steps=<N> --dataset-id={dataset_id}`"
    )


def _download(dataset_id: str) -> None:
    import minari

    try:
        minari.download_dataset(dataset_id)
    except Exception as e:  # network, unknown remote id, version mismatch: all end the same way
        raise DatasetError(
            f"could not download dataset '{dataset_id}' ({type(e).__name__}: {e}); check the id "
            "with `minari list remote`, or create it locally with `python -m "
            f"ampl_jax.datagen.make_dataset --dataset-id={dataset_id} ...`"
        ) from None


def read_minari(dataset_id: str, data_path: Path) -> tuple[Any, list[dict], dict]:
    """Dataset object, all episodes as dicts of numpy arrays, metadata; any failure -> unreadable."""
    import minari

    try:
        ds = minari.MinariDataset(data_path)
        metadata = ds.storage.metadata
        episodes = list(ds.storage.get_episodes(range(ds.total_episodes)))
    except Exception as e:  # h5py/json/minari raise many kinds; the fix is the same for all
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DatasetError(
            f"dataset '{dataset_id}' at {data_path.parent} is unreadable ({type(e).__name__}: "
            f"{first_line}); delete that directory and download or re-create the dataset"
        ) from None
    return ds, episodes, metadata


def _flat_box(space: gymnasium.Space, what: str, dataset_id: str) -> int:
    if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        raise DatasetError(
            f"dataset '{dataset_id}' has {what} space {space}: AMPL needs a 1-D Box (flat vectors)"
        )
    return int(space.shape[0])


def _check_finite(name: str, x: np.ndarray, dataset_id: str) -> None:
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise DatasetError(
            f"dataset '{dataset_id}': {bad} non-finite (NaN/inf) values in {name}; "
            "clean or re-create the dataset"
        )


def _spec_json(metadata: dict) -> tuple[str | None, str | None]:
    """(env id, EnvSpec json) of the evaluation env: eval_env_spec, else the collection env_spec."""
    for key in ("eval_env_spec", "env_spec"):
        raw = metadata.get(key)
        if not isinstance(raw, str):
            continue
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError:
            continue
        # Old Minari files carry keys newer EnvSpecs lack: keep only current fields so that
        # `EnvSpec.from_json(info.env_spec_json)` works for the evaluator.
        init_fields = {f.name for f in dataclasses.fields(gymnasium.envs.registration.EnvSpec) if f.init}
        cleaned = json.dumps({k: v for k, v in fields.items() if k in init_fields})
        return fields.get("id"), cleaned
    env_id = metadata.get("env_id") or metadata.get("env_name")
    return (env_id if isinstance(env_id, str) else None), None


def _optional_float(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _transitions(episodes, dataset_id: str, obs_dim: int, act_dim: int) -> tuple[np.ndarray, ...]:
    """The episodes' transitions, concatenated and checked: (s, s', a, r (float64), done, a', a'
    valid, initial states). A shape that does not fit the spaces or a non-finite value is refused."""
    obs, next_obs, acts, next_acts, valid, rews, dones, init_obs = [], [], [], [], [], [], [], []
    raw_obs = []  # every stored observation once (s and s' overlap), for the finiteness check
    for ep in episodes:
        o, a = np.asarray(ep["observations"]), np.asarray(ep["actions"])
        r, term = np.asarray(ep["rewards"]), np.asarray(ep["terminations"])
        n = len(r)
        if n == 0:
            continue  # a reset with no step: no transition, and no valid start state either
        expect = {"observations": (n + 1, obs_dim), "actions": (n, act_dim), "terminations": (n,)}
        for name, arr in (("observations", o), ("actions", a), ("terminations", term)):
            if arr.shape != expect[name]:
                raise DatasetError(
                    f"dataset '{dataset_id}' episode {ep['id']}: {name} have shape {arr.shape}, "
                    f"expected {expect[name]} from the dataset's spaces ({n} steps); re-create the dataset"
                )
        raw_obs.append(o)
        obs.append(o[:-1])
        next_obs.append(o[1:])
        acts.append(a)
        # a' of step t is a[t + 1] in the same episode; the last step has none (valid = 0).
        next_acts.append(np.concatenate([a[1:], np.zeros((1, act_dim), a.dtype)]))
        valid.append(np.concatenate([np.ones(n - 1), np.zeros(1)]))
        rews.append(r)
        dones.append(term.astype(np.float32))
        init_obs.append(o[0])

    if not obs:
        raise DatasetError(f"dataset '{dataset_id}' holds no transitions; re-create it with more steps")

    observations = np.concatenate(obs)
    actions = np.concatenate(acts)
    rewards = np.concatenate(rews).astype(np.float64)
    for name, arr in (
        ("observations", np.concatenate(raw_obs)),
        ("actions", actions),
        ("rewards", rewards),
    ):
        _check_finite(name, arr, dataset_id)
    return (observations, np.concatenate(next_obs), actions, rewards, np.concatenate(dones),
            np.concatenate(next_acts), np.concatenate(valid), np.stack(init_obs))


def _score_scales(metadata: dict, env_id: str) -> tuple[float | None, float | None, float | None, float | None]:
    """(ref_min, ref_max, d4rl_min, d4rl_max): the dataset's own reference scores, else the table's."""
    table = scores.reference_scores(env_id)
    ref_min = _optional_float(metadata.get("ref_min_score"))
    ref_max = _optional_float(metadata.get("ref_max_score"))
    if ref_min is None and table is not None:
        ref_min = table[0]
    if ref_max is None and table is not None:
        ref_max = table[1]
    # Second scale: official Minari datasets and older local ones lack the keys; use the table.
    d4rl_min = _optional_float(metadata.get("d4rl_ref_min_score"))
    d4rl_max = _optional_float(metadata.get("d4rl_ref_max_score"))
    if d4rl_min is None or d4rl_max is None:
        d4rl_min, d4rl_max = table if table is not None else (None, None)
    return ref_min, ref_max, d4rl_min, d4rl_max


def load_dataset(dataset_id: str, *, download: bool = False) -> tuple[OfflineData, DatasetInfo]:
    """Load a Minari dataset from the local store (or download it) as `OfflineData` + `DatasetInfo`.

    Refuses non-finite values, arrays that do not fit the declared spaces and non-Box spaces with
    a `DatasetError` instead of training on them.
    """
    check_dataset_id(dataset_id)
    root = dataset_path(dataset_id)
    data_path = root / "data"
    if not data_path.exists():
        if not download:
            raise DatasetNotFoundError(_missing_message(dataset_id, root))
        _download(dataset_id)
        if not data_path.exists():
            raise DatasetError(f"download of '{dataset_id}' left no data at {data_path}; retry or create it locally")

    ds, episodes, metadata = read_minari(dataset_id, data_path)
    obs_dim = _flat_box(ds.observation_space, "observation", dataset_id)
    act_dim = _flat_box(ds.action_space, "action", dataset_id)

    observations, next_observations, actions, rewards, dones, next_actions, valid, init_observations = (
        _transitions(episodes, dataset_id, obs_dim, act_dim))
    r_min, r_max = float(rewards.min()), float(rewards.max())
    high = np.maximum(np.abs(ds.action_space.high), np.abs(ds.action_space.low))
    if not np.all(np.isfinite(high)):
        raise DatasetError(
            f"dataset '{dataset_id}' has an unbounded action space {ds.action_space}: the actor "
            "needs finite bounds (max_action)"
        )

    env_id, spec_json = _spec_json(metadata)
    if not env_id:
        raise DatasetError(
            f"dataset '{dataset_id}' names no environment (no env_spec/eval_env_spec in its "
            "metadata): re-create it with make_dataset, which records the env"
        )
    ref_min, ref_max, d4rl_min, d4rl_max = _score_scales(metadata, env_id)

    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    data = OfflineData(
        observations=f32(observations),
        actions=f32(actions),
        rewards=f32(rewards),
        scaled_rewards=preprocess.rescale_rewards(f32(rewards), r_min, r_max),
        next_observations=f32(next_observations),
        dones=f32(dones),
        next_actions=f32(next_actions),
        next_action_valid=f32(valid),
        init_observations=f32(init_observations),
    )
    info = DatasetInfo(
        dataset_id=dataset_id,
        env_id=env_id,
        obs_dim=obs_dim,
        act_dim=act_dim,
        max_action=float(high.max()),
        num_episodes=len(init_observations),
        num_transitions=int(observations.shape[0]),
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        reward_min=r_min,
        reward_max=r_max,
        env_spec_json=spec_json,
        d4rl_ref_min_score=d4rl_min,
        d4rl_ref_max_score=d4rl_max,
    )
    return data, info
