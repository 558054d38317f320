"""AMPL's own MIW estimators, run on a fixed target policy as AMPL runs them before a refit.

For each estimator the run's config gets its overrides (`config.VARIANTS`), `build_agent` makes the
agent, `init_state` a fresh w (the same initial parameters for every estimator; called eagerly: its
small initialisers compile once for all agents, where a jitted init compiles again for each), the policy's
actor and critic are put in, and one `make_miw_phase(agent, steps)` block runs (it copies
critic_target into Q1'; VPM: one power-method run, at most T x M steps, as in AMPL).
A snapshot policy has no critic of its own: `fit_critic` fits one with AMPL's critic step.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ampl_jax.methods.ampl.update import critic_step
from ampl_jax.types import OfflineData


def fit_critic(agent: Any, state: Any, data: OfflineData, steps: int, key: jax.Array) -> Any:
    """`state` with its critic (and critic target, optimiser) fitted to Q of the fixed policy
    state.actor_target on the real transitions alone, by `steps` of AMPL's critic update: the twin
    critic, y = r~ + gamma (1 - d) (0.75 min + 0.25 max) Q'(s', pi(s')), Huber loss, the critic
    optimiser, Polyak tau, batches of the agent's batch size."""

    @jax.jit  # data as an argument, not a constant folded into the program
    def run(state, data, key):
        def step(s, k):
            k_idx, k_pi = jax.random.split(k)
            return critic_step(agent, s, data.sample(k_idx, agent.hp.agent.batch_size), k_pi)[0], None

        return jax.lax.scan(step, state, jax.random.split(key, steps))[0]

    return run(state, data, key)


@functools.partial(jax.jit, static_argnums=0)  # one compile per w network (Flax modules compare by value)
def _apply(net: Any, params: Any, obs: jax.Array, act: jax.Array) -> jax.Array:
    return net.apply(params, obs, act)


def miw_on_data(agent: Any, miw_params: Any, data: OfflineData) -> np.ndarray:
    """w on every data row (float64, not normalised)."""
    return np.asarray(_apply(agent.miw, miw_params, data.observations, data.actions), np.float64)


def run_estimator(agent: Any, phase: Any, fresh: Any, policy_state: Any,
                  data: OfflineData) -> tuple[np.ndarray, dict[str, float]]:
    """One block of the estimator's MIW steps from the fresh state's w, with the policy's actor,
    critic (and model: read only by the reward test function) put in; returns w on every data row
    and the block's mean metrics. The phase donates its input: it gets copies, so one fresh state
    and one policy state serve every estimator."""
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    s = policy_state
    state = copy(fresh).replace(step=copy(s.step), actor=copy(s.actor), actor_target=copy(s.actor_target),
                                critic=copy(s.critic), critic_target=copy(s.critic_target), model=copy(s.model))
    state, metrics = phase(state, data)
    return miw_on_data(agent, state.miw, data), {k: float(v) for k, v in jax.device_get(metrics).items()}
