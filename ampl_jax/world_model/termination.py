"""Termination rules of the Gymnasium v5 MuJoCo tasks, as pure batched jnp functions.

Model rollouts have no simulator, so the env's `terminated` must be recomputed from the
predicted next observation. Every rule below assumes the env's DEFAULT kwargs, in particular
`exclude_current_positions_from_observation=True` (the x (and y) position is not in obs), and
is checked against the real environments in tests/world_model/test_termination.py.

Observation layouts (default kwargs) and what each rule reads:

- Hopper-v5: obs = [qpos[1:] (z, angle, 3 joints), clip(qvel, -10, 10)]. Healthy iff
  0.7 < z, -0.2 < angle < 0.2 and every entry of state_vector()[2:] in (-100, 100).
  The env tests the UNCLIPPED qvel; the observation only holds clip(qvel, +-10), so a velocity
  above 100 in magnitude (never seen in practice) cannot be detected from obs. We test obs[1:].
- Walker2d-v5: z = obs[0], angle = obs[1]; healthy iff 0.8 < z < 2.0 and -1 < angle < 1.
- Ant-v5: obs = [qpos[2:] (torso z, quaternion, 8 joints), qvel (14), contact forces (78)].
  Healthy iff 0.2 <= z <= 1.0 and state_vector() (qpos, qvel) is finite. x, y are not in obs;
  we test finiteness of obs[:27] (qpos[2:], qvel) instead of the full state.
- InvertedPendulum-v5: obs = [qpos (2), qvel (2)]; terminated iff obs not finite or
  |obs[1]| > 0.2.
- InvertedDoublePendulum-v5: terminated iff y_tip <= 1, with y_tip the height of the tip site.
  obs = [x, sin th1, sin th2, cos th1, cos th2, qvel (3), qfrc_constraint[0]], and from the XML
  y_tip = 0.6 cos th1 + 0.6 cos(th1 + th2). The env reads `data.site_xpos`, which MuJoCo does
  not recompute after the final integration stage of `mj_step`, so the env's y lags the observed
  state slightly (|difference| up to ~1e-4 measured under random actions): the rule recomputed
  from obs can disagree only when y_tip is within ~1e-4 of 1 (no disagreement in our tests).
- HalfCheetah-v5, Swimmer-v5, Reacher-v5, Pusher-v5: never terminate.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

TerminationFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _never(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    return jnp.zeros(next_obs.shape[:-1], dtype=bool)


def _hopper(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    z, angle = next_obs[..., 0], next_obs[..., 1]
    # abs before the comparison (the `abs(obs[1:] < 100)` trap of public code).
    healthy_state = jnp.all(jnp.abs(next_obs[..., 1:]) < 100.0, axis=-1)
    healthy = healthy_state & (z > 0.7) & (angle > -0.2) & (angle < 0.2)
    return ~healthy


def _walker2d(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


def _ant(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    z = next_obs[..., 0]
    finite = jnp.all(jnp.isfinite(next_obs[..., :27]), axis=-1)
    healthy = finite & (z >= 0.2) & (z <= 1.0)
    return ~healthy


def _inverted_pendulum(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    finite = jnp.all(jnp.isfinite(next_obs), axis=-1)
    return ~finite | (jnp.abs(next_obs[..., 1]) > 0.2)


def _inverted_double_pendulum(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    s1, s2, c1, c2 = (next_obs[..., i] for i in range(1, 5))
    y_tip = 0.6 * c1 + 0.6 * (c1 * c2 - s1 * s2)
    return y_tip <= 1.0


_RULES: dict[str, TerminationFn] = {
    "hopper": _hopper,
    "walker2d": _walker2d,
    "ant": _ant,
    "halfcheetah": _never,
    "swimmer": _never,
    "reacher": _never,
    "pusher": _never,
    "invertedpendulum": _inverted_pendulum,
    "inverteddoublependulum": _inverted_double_pendulum,
}


def _family(env_id: str) -> str:
    """'Hopper-v5' / 'hopper' / 'mujoco/hopper/medium-v0' -> 'hopper'."""
    name = env_id.strip().lower()
    if name.startswith("mujoco/"):
        name = name.split("/")[1]
    name = name.split("-v")[0].replace("_", "").replace("-", "")
    return name


def termination_fn(env_id: str) -> TerminationFn:
    """The env's `terminated` rule as f(obs, act, next_obs) -> bool[...], batched on leading axes.

    Accepts a Gymnasium id ("Hopper-v5"), a bare name ("hopper") or a Minari dataset id
    ("mujoco/hopper/medium-v0"). Only v5 semantics with default env kwargs are implemented;
    a version other than v5 in a Gymnasium id is rejected rather than silently approximated.
    """
    name = env_id.strip()
    if "-v" in name and not name.lower().startswith("mujoco/") and not name.endswith("-v5"):
        raise ValueError(
            f"termination_fn: only Gymnasium v5 MuJoCo rules are implemented, got {env_id!r}"
        )
    family = _family(name)
    if family not in _RULES:
        raise ValueError(
            f"termination_fn: no termination rule for {env_id!r}; known: {sorted(_RULES)}"
        )
    return _RULES[family]
