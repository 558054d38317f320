"""The hyperparameters AMPL's compiled step and host hook read, as frozen dataclasses.

The jitted step closes over these, never over the whole config: what a part depends on shows in
its dataclass, a typo'd key fails when the agent is built, and nothing else in the config can
reach (or silently recompile) the step. Values are taken from the config as they are (lists as
tuples), so the step computes exactly what it computed from the config itself.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from ampl_jax.config.validation import take
from ampl_jax.methods.ampl import miw as miw_lib


@dataclasses.dataclass(frozen=True)
class AgentHP:
    """config.agent as the update step reads it (network sizes and optimisers are built once from the rest)."""

    batch_size: int
    gamma: float
    critic_huber_delta: float
    target_min_weight: float
    target_cap: float
    tau: float
    noise_dim: int
    noise_std: float
    noise_clip: float
    actor_update_every: int
    actor_tau: float
    q_coef: float
    q_avg_rate: float
    warm_start_epochs: int
    true_label_low: float
    regularizer: str
    weighted_regularizer: bool
    kl_dual_weighted: bool
    policy: str


@dataclasses.dataclass(frozen=True)
class RolloutHP:
    """config.rollout: model rollouts into the FIFO buffer and the real-data fraction schedule."""

    horizon: int
    batch_size: int
    transitions_per_rollout: int
    period: int
    buffer_capacity: int
    real_full_epochs: int
    real_decay: float
    real_decay_every: int
    real_min: float
    fixed_real_fraction: float


@dataclasses.dataclass(frozen=True)
class TDDiceMultiHP:
    """config.miw.td_dice_multi: the K random test functions of the td_dice_multi estimator."""

    num_functions: int
    features: str
    scale: float
    resample: bool
    seed: int
    with_q: bool
    split_batch_gradient: bool
    constant: bool  # the constant test function f_0 = 1 (fixes the scale E_D[w])
    mass_penalty: float  # pull of E_b[w] to the mass the constant's equation implies (0: none)


@dataclasses.dataclass(frozen=True)
class MIWHP:
    """config.miw as the MIW step and phase read it; `settings` resolves the chosen estimator's section."""

    schedule: str
    estimator: str
    test_function: str
    batch_size: int
    mu0_batch_size: int
    tau: float
    huber_delta: float
    mean_bound: float
    constraint: str
    split_batch_gradient: bool
    td_dice_multi: TDDiceMultiHP
    settings: miw_lib.EstimatorSettings
    phase_steps: int  # MIW steps of one "phased" block that change anything


@dataclasses.dataclass(frozen=True, eq=False)
class ModelHP:
    """The world model as AMPL uses it: elite sampling in the step, the refit in the hook."""

    rollout_elite_sampling: str
    fake_elite_sampling: str
    dtype: str  # compute.model_dtype: matmul inputs of rollouts, model samples and fits
    refit_max_epochs: int
    fit_config: ml_collections.FrozenConfigDict  # config.model, as world_model.fit reads it


@dataclasses.dataclass(frozen=True)
class TrainHP:
    epoch_length: int  # iterations per epoch: the schedules are in epochs
    model_retrain_epochs: int
    total_steps: int


@dataclasses.dataclass(frozen=True)
class EvalHP:
    num_action_samples: int  # best of N sampled actions by min Q


@dataclasses.dataclass(frozen=True, eq=False)
class AMPLHyper:
    agent: AgentHP
    rollout: RolloutHP
    miw: MIWHP
    model: ModelHP
    train: TrainHP
    eval: EvalHP

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> AMPLHyper:
        m = config.miw
        return cls(
            agent=take(AgentHP, config.agent),
            rollout=take(RolloutHP, config.rollout),
            miw=take(MIWHP, m, td_dice_multi=take(TDDiceMultiHP, m.td_dice_multi),
                      settings=miw_lib.estimator_settings(m), phase_steps=miw_lib.phase_steps(m)),
            model=ModelHP(config.model.rollout_elite_sampling, config.model.fake_elite_sampling,
                          config.compute.model_dtype, config.model.refit_max_epochs,
                          ml_collections.FrozenConfigDict(config.model)),
            train=take(TrainHP, config.train),
            eval=take(EvalHP, config.eval),
        )
