"""Many seeds in one compiled program, spread over every device of a host or a pod.

A seed axis is a leading axis on every leaf of the TrainState; `update_step` runs under
`jax.vmap` over it, and the axis is sharded over a 1-D `jax.sharding.Mesh` of all devices, so
each device advances its own seeds with no communication. The offline data is replicated.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

SEED_AXIS = "seeds"


def maybe_initialize_multihost() -> None:
    """Join a multi-host job (TPU pod, or JAX_COORDINATOR_ADDRESS set) before any device use.

    On a single host this does nothing. On TPU VMs `jax.distributed.initialize()` finds the
    coordinator itself; elsewhere it reads JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID.
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0:
        jax.distributed.initialize()


def is_main_process() -> bool:
    """Only process 0 writes shared logs and checkpoints."""
    return jax.process_index() == 0


def seed_mesh(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over the devices that the seeds divide evenly (all of them when possible)."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    while num_seeds % n:
        n -= 1
    return Mesh(np.asarray(devices[:n]), (SEED_AXIS,))


def stack_seeds(trees: Sequence[Any]) -> Any:
    """[tree_seed0, tree_seed1, ...] -> one tree with a leading seed axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack_seed(tree: Any, i: int) -> Any:
    """Seed i's slice of a seed-stacked tree."""
    return jax.tree.map(lambda x: x[i], tree)


def shard_seeds(tree: Any, mesh: Mesh) -> Any:
    """Place a seed-stacked tree with its leading axis split over the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P(SEED_AXIS)))


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, NamedSharding(mesh, P()))


def make_seeded_step(step_fn: Callable, mesh: Mesh | None = None) -> Callable:
    """jit(vmap(step_fn)) over the seed axis of the state; data shared by every seed.

    With a mesh, the state (and the outputs) are sharded along the seed axis, so every device
    runs its own seeds of the same program.
    """
    vstep = jax.vmap(step_fn, in_axes=(0, None))
    if mesh is None:
        return jax.jit(vstep, donate_argnums=0)
    seeds, rep = NamedSharding(mesh, P(SEED_AXIS)), NamedSharding(mesh, P())
    return jax.jit(vstep, in_shardings=(seeds, rep), out_shardings=(seeds, seeds), donate_argnums=0)
