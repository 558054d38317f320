"""Target policies of the check that are not AMPL actors: the shipped SAC snapshots and per-step
mixtures of two, in the calling convention of AMPL's actors.

Why that convention (`init(key, obs, noise) -> params`, `apply(params, obs, noise) -> (action,
raw action)`): AMPL's own MIW step then samples a snapshot exactly as it samples its actor
(a0 = pi(s0), a1 = pi(s')), and the real-env rollouts of the ground truth call the same function
through the same `Agent.act`, so truth and estimators see one policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ampl_jax import networks
from ampl_jax.lab.miw_check import OptionError


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """One target policy: "ampl:STEP" (the AMPL run's actor at checkpoint STEP), "snapshot:NAME"
    (a shipped SAC snapshot), "mix:A:B:BETA" (B's action with probability BETA, else A's, each step)."""

    kind: str  # "ampl" | "snapshot"
    step: int = -1  # ampl
    a: str = ""  # snapshot names
    b: str = ""
    beta: float = 0.0

    @property
    def label(self) -> str:
        if self.kind == "ampl":
            return f"AMPL actor, step {self.step}"
        if self.beta == 0.0:
            return f"snapshot {self.a}"
        return f"mix {self.a}/{self.b} {self.beta:g}"


def parse_policies(text: str, behaviour: str) -> list[PolicySpec]:
    """'behaviour,mix:medium:expert:0.25,ampl:8000' -> specs ('behaviour' = the data's snapshot)."""
    specs = []
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        parts = item.split(":")
        try:
            if parts == ["behaviour"]:
                specs.append(PolicySpec("snapshot", a=behaviour, b=behaviour))
            elif parts[0] == "ampl" and len(parts) == 2:
                specs.append(PolicySpec("ampl", step=int(parts[1])))
            elif parts[0] == "snapshot" and len(parts) == 2:
                specs.append(PolicySpec("snapshot", a=parts[1], b=parts[1]))
            elif parts[0] == "mix" and len(parts) == 4 and 0.0 <= float(parts[3]) <= 1.0:
                specs.append(PolicySpec("snapshot", a=parts[1], b=parts[2], beta=float(parts[3])))
            else:
                raise ValueError
        except ValueError:
            raise OptionError(f"bad policy {item!r}: use behaviour, ampl:STEP, snapshot:NAME or "
                              "mix:A:B:BETA (0 <= BETA <= 1)") from None
    if not specs:
        raise OptionError("--policies is empty: name at least one target policy")
    return specs


class SnapshotMixture:
    """pi(s, eps): the tanh-Gaussian sample of snapshot B with probability beta, else of snapshot A.

    `noise` is the implicit actor's noise [n, noise_dim] (N(0, 1) clipped at +-3, noise_dim >=
    act_dim + 1): noise[:, :act_dim] is the Gaussian eps of the sample, and B is taken where
    Phi(noise[:, act_dim]) < beta. The clipping at 3 sigma changes the snapshot's own sampling
    for 0.3 % of the draws per dimension. Params {"a", "b": the snapshots' MLP variables, "beta",
    "low", "high"} are all arrays, so one compiled MIW phase serves every snapshot and mixture.
    """

    def __init__(self, act_dim: int, hidden: tuple[int, ...], default_params: dict):
        self.act_dim = act_dim
        self.mlp = networks.MLP(hidden, 2 * act_dim, None, weight_init="flax")  # the behaviour SAC's actor
        self.default_params = default_params

    def init(self, key: jax.Array, obs: jax.Array, noise: jax.Array) -> dict:
        del key, obs, noise
        return jax.tree.map(jnp.asarray, self.default_params)

    def apply(self, params: dict, obs: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        eps = noise[:, :self.act_dim]

        def sample(variables):
            mean, log_std = networks.gaussian_head(self.mlp.apply(variables, obs))
            return mean + jnp.exp(log_std) * eps

        take_b = jax.scipy.stats.norm.cdf(noise[:, self.act_dim]) < params["beta"]
        raw = jnp.where(take_b[:, None], sample(params["b"]), sample(params["a"]))
        low, high = params["low"], params["high"]
        return low + 0.5 * (jnp.tanh(raw) + 1.0) * (high - low), raw


def _variables(layers: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """A snapshot's (kernel, bias) layers as the variables of `networks.MLP` (Dense_0, Dense_1, ...)."""
    return {"params": {f"Dense_{i}": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}
                       for i, (w, b) in enumerate(layers)}}


def snapshot_params(env_id: str, spec: PolicySpec) -> dict[str, Any]:
    """SnapshotMixture's params of `spec` (a plain snapshot: A = B, beta = 0)."""
    from ampl_jax.datagen.snapshots import SnapshotError, load_snapshot

    try:
        a, b = load_snapshot(env_id, spec.a), load_snapshot(env_id, spec.b)
    except SnapshotError as e:
        raise OptionError(str(e)) from None
    if [w.shape for w, _ in a.layers] != [w.shape for w, _ in b.layers]:
        raise OptionError(f"snapshots {spec.a} and {spec.b} of {env_id} differ in shape; cannot mix them")
    return {"a": _variables(a.layers), "b": _variables(b.layers), "beta": jnp.asarray(spec.beta, jnp.float32),
            "low": jnp.asarray(a.low), "high": jnp.asarray(a.high)}


def snapshot_agent(agent: Any, env_id: str, spec: PolicySpec) -> Any:
    """AMPL's `agent` with its actor replaced by a SnapshotMixture (the implicit actor's noise);
    `spec` gives the params a fresh state starts from (any snapshot spec: they share one shape)."""
    if agent.hp.agent.policy != "implicit" or agent.noise_dim < agent.act_dim + 1:
        raise OptionError("snapshot policies need agent.policy='implicit' with noise_dim > act_dim")
    default = snapshot_params(env_id, spec)
    hidden = tuple(int(layer["kernel"].shape[1]) for layer in list(default["a"]["params"].values())[:-1])
    return dataclasses.replace(agent, actor=SnapshotMixture(agent.act_dim, hidden, default))


def behaviour_action_mse(env_id: str, behaviour: str, data: Any, seed: int) -> float | None:
    """The reference for `diag_action_mse`: a fresh action of the behaviour snapshot itself at every
    data state against the logged one (two samples of one stochastic policy: 2 x its variance).
    None for a behaviour without one snapshot (random, medium-expert)."""
    from ampl_jax.datagen.sac import act_np, to_env_action
    from ampl_jax.datagen.snapshots import SnapshotError, load_snapshot

    try:
        snap = load_snapshot(env_id, behaviour)
    except SnapshotError:
        return None
    obs = np.asarray(data.observations, np.float32)
    # another seed than make_dataset's (the same one would redraw the logged actions exactly)
    act = to_env_action(act_np(snap.layers, obs, np.random.default_rng(seed + 12_345)), snap.low, snap.high)
    return float(np.mean((act - np.asarray(data.actions)) ** 2))
