"""Where a run's data comes from: the local Minari store, the offline fallback id, or made locally.

Users with network access get Minari's real download path (`dataset.download`); offline, a
config names a locally made dataset (`dataset.fallback_id`) and, when allowed, makes it from the
real Gymnasium environment with a shipped behaviour policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ampl_jax.data.load import DatasetError, DatasetNotFoundError, load_dataset
from ampl_jax.types import DatasetInfo, OfflineData


def load_data(config: ml_collections.ConfigDict, *, progress: bool = True) -> tuple[OfflineData, DatasetInfo]:
    """Load the dataset, creating it locally first when the config allows and it is missing."""
    d = config.dataset
    dataset_id = d.id
    try:
        data, info = load_dataset(dataset_id, download=d.download)
    except DatasetNotFoundError:
        if d.fallback_id and d.fallback_id != d.id:
            # Offline: the official id is not in the local store; use the locally made one.
            print(f"Dataset {d.id!r} is not in the local Minari store and download is off: using the local "
                  f"{d.fallback_id!r} instead (--config.dataset.download=True fetches the official one).", flush=True)
            dataset_id = d.fallback_id
            try:
                data, info = load_dataset(dataset_id)
            except DatasetNotFoundError:
                if not d.create_if_missing:
                    raise
                data, info = _create(config, dataset_id, progress)
        elif not d.create_if_missing:
            raise
        else:
            data, info = _create(config, dataset_id, progress)
    if d.mu0 == "env":
        data = data._replace(init_observations=_env_initial_states(info.env_id, d.mu0_env_samples, config.seed))
    return data, info


def _create(config: ml_collections.ConfigDict, dataset_id: str, progress: bool) -> tuple[OfflineData, DatasetInfo]:
    """Make a missing local dataset with make_dataset (real env, shipped behaviour policy)."""
    from ampl_jax.datagen.make_dataset import make_dataset

    d = config.dataset
    if not d.create_env:
        raise DatasetError(f"dataset {dataset_id!r} is missing and config.dataset.create_env is empty: "
                           "set it to a Gymnasium id such as Hopper-v5")
    print(f"Dataset {dataset_id!r} not found locally: creating it from {d.create_env} ({d.create_policy} "
          f"policy, {d.create_steps} steps).", flush=True)
    make_dataset(d.create_env, d.create_policy, d.create_steps, config.seed, dataset_id, progress=progress)
    return load_dataset(dataset_id)


def _env_initial_states(env_id: str, n: int, seed: int) -> jax.Array:
    """The official code's mu0: states from env.reset() (touches the simulator, not the data)."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs = [env.reset(seed=seed + i)[0] for i in range(n)]
    env.close()
    return jnp.asarray(np.stack(obs), jnp.float32)
