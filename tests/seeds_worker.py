"""Runs 4 seeds of the tiny config for 2 update steps and saves the final states (npz).

Used by test_seeds.py in a subprocess, since the number of CPU devices is fixed at JAX start
(XLA_FLAGS=--xla_force_host_platform_device_count=N).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from ampl_jax import distributed
from ampl_jax.methods.ampl.state import init_train_state
from ampl_jax.methods.ampl.update import build_update_step
from tests.methods.ampl.test_update import _setup


def main(out_path: str, num_seeds: int = 4) -> None:
    config, agent, data, state0 = _setup()
    states = [init_train_state(agent, jax.random.PRNGKey(s), jax.tree.map(jnp.copy, state0.model)) for s in range(num_seeds)]
    mesh = distributed.seed_mesh(num_seeds)
    state = distributed.shard_seeds(distributed.stack_seeds(states), mesh)
    step = distributed.make_seeded_step(build_update_step(agent), mesh)
    data = distributed.replicate(data, mesh)
    for _ in range(2):
        state, metrics = step(state, data)
    leaves = {f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(jax.device_get(state)))}
    np.savez(out_path, devices=len(mesh.devices.ravel()), **leaves)


if __name__ == "__main__":
    main(sys.argv[1])
