"""Behaviour cloning: the floor every offline RL method should beat, on the same data and loop.

A deterministic policy max_action * tanh(MLP(s)) regressed onto the dataset actions by MSE.
The module mirrors AMPL's interface (make_agent, init_state, build/make_update_step,
make_select_action) so the host loop can swap it in; it needs no world model (NEEDS_MODEL).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ampl_jax import networks
from ampl_jax.methods.protocol import no_diagnostics, no_hook
from ampl_jax.types import DatasetInfo, OfflineData
from ampl_jax.world_model.ensemble import ModelState

NEEDS_MODEL = False  # the loop skips fitting (and refitting) the dynamics ensemble

Params = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class BCState:
    step: jax.Array  # gradient steps done (int32)
    key: jax.Array  # PRNG key
    policy: Params
    opt: optax.OptState


@dataclasses.dataclass(frozen=True)
class BCHP:
    """What the BC step reads of the config."""

    batch_size: int  # bc.batch_size
    period: int  # rollout.period: BC steps per update_step call


@dataclasses.dataclass(frozen=True, eq=False)
class BCAgent:
    """Static parts of a BC run, closed over by the jitted functions."""

    policy: networks.MLP  # obs -> pre-tanh action
    tx: optax.GradientTransformation
    obs_dim: int
    act_dim: int
    max_action: float
    hp: BCHP

    def act(self, params: Params, obs: jax.Array) -> jax.Array:
        return self.max_action * jnp.tanh(self.policy.apply(params, obs))


def make_agent(config: ml_collections.ConfigDict, info: DatasetInfo, *unused: Any,
               data: OfflineData | None = None) -> BCAgent:
    """The methods' make_agent signature; only the config and the shapes are used."""
    b = config.bc
    return BCAgent(
        policy=networks.MLP(tuple(b.hidden_dims), info.act_dim, float(b.leaky_relu_slope)),
        tx=optax.adam(float(b.lr)),
        obs_dim=info.obs_dim,
        act_dim=info.act_dim,
        max_action=float(info.max_action),
        hp=BCHP(config.bc.batch_size, config.rollout.period),
    )


def init_state(agent: BCAgent, key: jax.Array, model: ModelState | None = None) -> BCState:
    """Fresh policy and Adam state; `model` is accepted (and ignored) for interface parity."""
    k_policy, key = jax.random.split(key)
    params = agent.policy.init(k_policy, jnp.zeros((1, agent.obs_dim), jnp.float32))
    return BCState(step=jnp.zeros((), jnp.int32), key=key, policy=params, opt=agent.tx.init(params))


def bc_loss(agent: BCAgent, params: Params, obs: jax.Array, act: jax.Array) -> jax.Array:
    """Mean over the batch of the squared action error, summed over action dimensions."""
    return jnp.mean(jnp.sum(jnp.square(agent.act(params, obs) - act), axis=-1))


def _iteration(agent: BCAgent, data: OfflineData, state: BCState, key: jax.Array) -> tuple[BCState, Metrics]:
    idx = data.indices(key, agent.hp.batch_size)
    loss, grads = jax.value_and_grad(lambda p: bc_loss(agent, p, data.observations[idx], data.actions[idx]))(
        state.policy)
    updates, opt = agent.tx.update(grads, state.opt, state.policy)
    state = state.replace(policy=optax.apply_updates(state.policy, updates), opt=opt, step=state.step + 1)
    return state, {"bc_loss": loss}


def build_update_step(agent: BCAgent) -> Callable[[BCState, OfflineData], tuple[BCState, Metrics]]:
    """Pure update_step: `rollout.period` BC steps in one lax.scan (AMPL's chunk length)."""
    period = int(agent.hp.period)

    def update_step(state: BCState, data: OfflineData) -> tuple[BCState, Metrics]:
        key, k_scan = jax.random.split(state.key)
        state, metrics = jax.lax.scan(lambda s, k: _iteration(agent, data, s, k), state.replace(key=key),
                                      jax.random.split(k_scan, period))
        return state, jax.tree.map(jnp.mean, metrics)

    return update_step


def make_update_step(agent: BCAgent) -> Callable[[BCState, OfflineData], tuple[BCState, Metrics]]:
    return jax.jit(build_update_step(agent), donate_argnums=0)


def make_select_action(agent: BCAgent) -> Callable[[BCState, jax.Array, jax.Array], jax.Array]:
    """Evaluation policy (state, key, obs[B, obs_dim]) -> actions[B, act_dim]; deterministic, key unused."""

    return jax.jit(lambda state, key, obs: agent.act(state.policy, obs))


make_hook, make_diagnostics = no_hook, no_diagnostics  # nothing runs between rollout periods
