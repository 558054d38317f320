"""Every default of AMPL (spec: shared docs ampl-spec.md, authors' code commit 7e961c8).

Part of the package so that it imports from anywhere (bench, tests, an installed copy); the
per-task files in the repository's configs/ import it and override a few values, and
configs/default.py re-exports it for `--config=configs/default.py`.
"""

import ml_collections

# Version of the locally made datasets (`ampl/<env>/<family>-v<N>`), per env family: bumped
# whenever that env's shipped SAC snapshots (ampl_jax/datagen/snapshots) change, so that a
# dataset made on a machine from older snapshots is never taken for one of the current ones.
LOCAL_DATA_VERSION: dict[str, int] = {"hopper": 1, "walker2d": 1, "halfcheetah": 1}


def local_dataset_id(family: str, name: str) -> str:
    """ampl-jax's own dataset id for an env family ("hopper") and dataset name ("medium-replay")."""
    return f"ampl/{family}/{name}-v{LOCAL_DATA_VERSION.get(family, 0)}"


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_seeds = 1
    # Which agent the loop trains: "ampl" (this paper), or a baseline sharing the same data
    # pipeline, world model and loop: "bc" (behaviour cloning), "mopo" (SAC on penalised rollouts),
    # "td3bc" (TD3+BC: TD3 with a behaviour-cloning term on the data alone).
    c.method = "ampl"
    # agent.warm_start_epochs, also read by the rollout schedule (rollout.real_full_epochs)
    warm_start_epochs = ml_collections.FieldReference(40)
    _data(c)  # one function per section below
    _dynamics(c)
    _rollouts(c, warm_start_epochs)
    _agent(c, warm_start_epochs)
    _miw(c)
    _compute(c)
    _schedule(c)
    _baselines(c)
    return c


def _data(c: ml_collections.ConfigDict) -> None:
    # --- data -------------------------------------------------------------------------------
    c.dataset = ml_collections.ConfigDict()
    c.dataset.id = "mujoco/walker2d/medium-v0"
    c.dataset.download = False  # True: fetch from the Minari remote when not in the local store
    # Create the dataset locally with make_dataset when it is missing (quick starts, tests).
    c.dataset.create_if_missing = False
    c.dataset.create_env = ""  # Gymnasium id used when creating, e.g. "Hopper-v5"
    c.dataset.create_policy = "random"
    c.dataset.create_steps = 20_000
    # Offline fallback: when `id` is not in the local store and download is off, train on this
    # locally made dataset instead (created with the settings above when create_if_missing).
    c.dataset.fallback_id = ""
    c.dataset.mu0 = "dataset"  # "dataset": first state of every episode; "env": env.reset() samples
    c.dataset.mu0_env_samples = 100_000


def _dynamics(c: ml_collections.ConfigDict) -> None:
    # --- dynamics ensemble --------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.num_members = 7
    c.model.num_elites = 5
    c.model.hidden_dims = (200, 200, 200, 200)
    c.model.learning_rate = 1e-3
    # L2 decay per hidden layer, then the output heads (mean and log-std); kernels AND biases,
    # as the authors' per-layer Adam weight_decay
    c.model.weight_decays = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5)
    c.model.head_weight_decay = 1e-4
    # one pair of learnable log-std bounds shared by all members (ensemble.ModelState)
    c.model.max_logstd_init = 0.25
    c.model.min_logstd_init = -5.0
    # coef * (sum max - sum min) of the shared bounds, added once to the loss summed over the
    # members: the authors' 0.01 * sum(2 max) - 0.01 * sum(2 min)
    c.model.logstd_bound_coef = 0.02
    c.model.batch_size = 128  # per member, independent indices
    c.model.epoch_steps = 1000
    c.model.holdout_fraction = 0.2
    c.model.max_holdout = 8092
    # Early stopping and snapshots, the authors' rule (world_model/fit.py): a member improves when
    # its holdout loss is > improvement_threshold below its last snapshot's; stop after `patience`
    # epochs without any improving member; restore each member's last improving epoch.
    c.model.patience = 10
    c.model.improvement_threshold = 0.01
    c.model.max_epochs = 1000  # safety cap for the first fit
    c.model.refit_max_epochs = 1000
    # How model samples pick an elite: "iid" (an independent uniform elite per input, as the
    # authors' code; runs every elite on the whole batch) or "balanced" (a random even split of
    # the batch over the elites: each input's elite is still uniform, at 1/num_elites the cost).
    c.model.rollout_elite_sampling = "iid"
    c.model.fake_elite_sampling = "balanced"  # the per-iteration s' ~ P_hat of the GAN's fake pairs
    # Several seeds' fits in one program: "map" runs them one after another inside it (each seed
    # bit-identical to a run of that seed alone), "vmap" batches them (parallel on an accelerator;
    # equal up to float32 rounding; no faster on a 2-core CPU, where one seed's matmuls fill it).
    c.model.seed_batching = "map"
    # Another run's workdir whose finished first fit (its model_fit_checkpoint) this run starts
    # from instead of fitting again: e.g. NW (miw.schedule=none) beside AMPL, whose first fits are
    # the same plain-MLE fit. Refused unless data, seeds and every model setting are the same.
    c.model.first_fit_from = ""


def _rollouts(c: ml_collections.ConfigDict, warm_start_epochs: ml_collections.FieldReference) -> None:
    # --- rollouts and data mix -------------------------------------------------------------------
    c.rollout = ml_collections.ConfigDict()
    c.rollout.horizon = 3
    c.rollout.batch_size = 2048  # start states per rollout batch
    c.rollout.transitions_per_rollout = 32_000
    c.rollout.period = 250  # policy iterations between rollouts (= length of the inner scan)
    c.rollout.buffer_capacity = 640_000
    # real-data fraction f: 1.0 up to epoch `real_full_epochs`, then minus `real_decay` every
    # `real_decay_every` epochs, floored at `real_min`. Unless set explicitly, real_full_epochs is
    # derived from the warm start as the authors' `warm_start_epochs + 5` (a reference: overriding
    # only agent.warm_start_epochs moves it too; 45 with the paper's 40).
    c.rollout.real_full_epochs = warm_start_epochs + 5
    c.rollout.real_decay = 0.1
    c.rollout.real_decay_every = 5
    c.rollout.real_min = 0.5
    c.rollout.fixed_real_fraction = -1.0  # >= 0 overrides the schedule (1.0 = real data only)


def _agent(c: ml_collections.ConfigDict, warm_start_epochs: ml_collections.FieldReference) -> None:
    # --- agent ------------------------------------------------------------------------------------
    c.agent = ml_collections.ConfigDict()
    c.agent.batch_size = 512
    c.agent.gamma = 0.99
    c.agent.hidden_dims = (400, 300)
    c.agent.leaky_relu_slope = 0.01
    # critic
    c.agent.critic_lr = 3e-4
    c.agent.critic_grad_clip = 0.1
    c.agent.critic_huber_delta = 500.0
    c.agent.target_min_weight = 0.75  # target = 0.75 min + 0.25 max
    c.agent.target_cap = 2000.0
    c.agent.tau = 0.005
    # implicit actor
    c.agent.noise_dim = 50
    c.agent.noise_std = 1.0
    c.agent.noise_clip = 3.0
    c.agent.actor_lr = 2e-4
    c.agent.actor_b1 = 0.4
    c.agent.actor_update_every = 2
    c.agent.actor_tau = 0.005
    c.agent.q_coef = 10.0  # policy loss: -(q_coef / |Q|avg) * Q + generator loss
    c.agent.q_avg_rate = 0.005
    c.agent.warm_start_epochs = warm_start_epochs  # generator loss only (40; see rollout.real_full_epochs)
    # discriminator
    c.agent.disc_lr = 2e-4
    c.agent.disc_b1 = 0.4
    c.agent.true_label_low = 0.8
    # "jsd" | "none" | "kl_dual" (the authors' --use_kl_dual: a linear critic D(true) - D(fake) in
    # place of the GAN's cross-entropies; with weighted_regularizer only, as theirs)
    c.agent.regularizer = "jsd"
    c.agent.weighted_regularizer = False  # WPR ablation: weight GAN losses by w * (1 - done)
    c.agent.kl_dual_weighted = True  # kl_dual: weigh its means by w * (1 - done) (the authors' --use_weight_wpr)
    # Policy class: "implicit" (pi(s, eps), the paper's) | "tanh_gaussian" (squashed Gaussian ablation)
    c.agent.policy = "implicit"
    # tanh_gaussian: its log std is clamped into these bounds (the authors' GaussianPolicy: [-20, 2])
    c.agent.gaussian_log_std_bounds = (-20.0, 2.0)


def _miw(c: ml_collections.ConfigDict) -> None:
    # --- MIW (TD-DICE) -----------------------------------------------------------------------------
    c.miw = ml_collections.ConfigDict()
    c.miw.schedule = "interleaved"  # "interleaved" | "phased" | "none" (NW: never reweight)
    c.miw.alpha = 0.5
    # The authors' --weight_output_clipping (off there by default, for every estimator): True
    # replaces (softplus(x) + 1e-8)^alpha by a soft clip of x into (1e-8, 500) (miw.ClippedMIWNet).
    # Read by td_dice and td_dice_multi; the ablation estimators read their own section's
    # output_clipping (True: the authors' README runs them with --weight_output_clipping=True).
    c.miw.output_clipping = False
    # TD-DICE's optimiser (lr, grad_clip: global norm, mean_bound); the ablation estimators read
    # only their own sections below (resolved in ONE place: miw.estimator_settings).
    c.miw.lr = 1e-6
    c.miw.grad_clip = 1.0
    c.miw.huber_delta = 1.0
    c.miw.mean_bound = 10.0
    # How the mean(w) <= bound correction is applied: "per_tensor" (the authors' Constraint optimiser:
    # each parameter tensor gets its own lambda) or "global" (one lambda for the whole parameter vector).
    c.miw.constraint = "per_tensor"
    c.miw.batch_size = 1024
    c.miw.mu0_batch_size = 2048
    c.miw.tau = 0.01  # w' and Q1' Polyak rate
    c.miw.last_layer_init = 3e-3
    c.miw.phased_steps = 100_000  # MIW steps per block, "phased" schedule
    # False: the spec's gradient (biased O(1/B) towards smaller w); True: Huber' on one half of
    # the batch times the gradient on the other (unbiased; see miw.td_dice_loss). Not a paper setting.
    c.miw.split_batch_gradient = False
    c.miw.test_function = "q"  # "q" | "reward" (r~ on data, the model's mean r^ at policy actions)
    # MIW estimator ablation: "td_dice" (the paper's) | "vpm" | "gendice" | "dualdice" |
    # "td_dice_multi" (TD-DICE against K random test functions; not the paper's; see miw.py)
    c.miw.estimator = "td_dice"
    # td_dice_multi: Eq. (9) tested against `num_functions` random features of the standardised
    # [s, a] ("fourier" | "relu", frequency `scale`), drawn afresh each step (resample; False: one
    # fixed draw from `seed`), plus Q1 with `with_q`. Shares TD-DICE's batches, w', tau,
    # huber_delta, grad_clip and mean_bound; its own Adam rate (not tuned on MuJoCo).
    c.miw.td_dice_multi = ml_collections.ConfigDict()
    c.miw.td_dice_multi.num_functions = 64
    c.miw.td_dice_multi.features = "fourier"
    c.miw.td_dice_multi.scale = 1.0
    c.miw.td_dice_multi.resample = True
    c.miw.td_dice_multi.seed = 0
    c.miw.td_dice_multi.with_q = False
    # The constant test function f_0 = 1 as well: its equation fixes the scale E_D[w] (= 1 without
    # terminals), which random features leave nearly free (issue #31: the batch mean w drifted up);
    # through the target w' it restores that scale slowly (rate 1 - gamma), so mass_penalty also
    # pulls E_b[w] to the mass the equation implies (miw.mass_gap; tests/methods/ampl/test_miw_tabular.py).
    c.miw.td_dice_multi.constant = True
    c.miw.td_dice_multi.mass_penalty = 0.1
    c.miw.td_dice_multi.split_batch_gradient = True
    c.miw.td_dice_multi.lr = 1e-4
    # Each ablation estimator's own settings, the authors' defaults (VPM_trainer.py, DICE_trainer.py).
    # None of them uses lr / grad_clip / mean_bound / tau above. grad_clip_value: element-wise
    # clip of every player's gradient (0: none). mask_terminals: drop the next-state term at
    # terminal rows as TD-DICE does (the authors' ablations do not). u: the E_D[w] = 1 multiplier.
    c.miw.vpm = ml_collections.ConfigDict()
    c.miw.vpm.lr = 3e-4  # w
    c.miw.vpm.u_lr = 3e-4
    c.miw.vpm.u_init = 1.0
    c.miw.vpm.norm_penalty = 1.0
    c.miw.vpm.grad_clip_value = 0.0
    c.miw.vpm.mask_terminals = False
    c.miw.vpm.output_clipping = True  # the authors' README: --dr_method=VPM --weight_output_clipping=True
    # A power-method run: `power_iterations` x `inner_steps` steps, damping 1/sqrt(t) at step t,
    # the target w' a hard copy of w refreshed every `inner_steps` steps. "phased": one run per
    # block (the block's steps past the run are no-ops; miw.phase_steps); "interleaved": runs
    # back to back.
    c.miw.vpm.power_iterations = 200
    c.miw.vpm.inner_steps = 10
    c.miw.gendice = ml_collections.ConfigDict()
    c.miw.gendice.lr = 3e-3  # w
    c.miw.gendice.nu_lr = 1e-4
    c.miw.gendice.u_lr = 1e-4
    c.miw.gendice.u_init = 1.0
    c.miw.gendice.norm_penalty = 1.0
    c.miw.gendice.grad_clip_value = 1.0
    c.miw.gendice.mask_terminals = False
    c.miw.gendice.output_clipping = True  # as the authors' README runs it
    c.miw.dualdice = ml_collections.ConfigDict()
    c.miw.dualdice.lr = 1e-4  # w
    c.miw.dualdice.nu_lr = 1e-4
    c.miw.dualdice.grad_clip_value = 1.0
    c.miw.dualdice.mask_terminals = False
    c.miw.dualdice.output_clipping = True  # as the authors' README runs it


def _compute(c: ml_collections.ConfigDict) -> None:
    # --- compute precision -----------------------------------------------------------------------
    # Only the INPUTS of matmuls change, accumulation is float32: parameters, optimiser states,
    # targets, losses, reductions, the buffer and the checkpoint stay float32 whatever is set here.
    c.compute = ml_collections.ConfigDict()
    c.compute.dtype = "float32"  # "float32" | "bfloat16": actor, critics, discriminator, MIW (and nu)
    c.compute.model_dtype = "float32"  # "float32" | "bfloat16": the world-model ensemble (fit and samples)
    # Passed to jax.default_matmul_precision around training ("high", "highest", "bfloat16",
    # "BF16_BF16_F32", ...: float32 matmuls on TPU/GPU); "default" leaves JAX's setting alone.
    c.compute.matmul_precision = "default"


def _schedule(c: ml_collections.ConfigDict) -> None:
    # --- schedule, evaluation, logging ------------------------------------------------------------
    c.train = ml_collections.ConfigDict()
    c.train.total_steps = 1_000_000
    c.train.epoch_length = 1000  # iterations per epoch (schedules are in epochs)
    c.train.model_retrain_epochs = 100
    c.train.eval_every = 1000  # iterations; rounded up to whole rollout periods (metrics are written then)

    c.eval = ml_collections.ConfigDict()
    c.eval.episodes = 10
    c.eval.num_action_samples = 10  # best of N sampled actions by min Q
    c.eval.max_episode_steps = -1  # -1: the environment's own limit
    # Also evaluate AMPL's actor by its own single sample (same episodes) and log it as the
    # one_sample_* columns: the paper's best-of-N rule trusts the critic's ranking of the samples.
    c.eval.one_sample_too = False

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 50_000
    c.checkpoint.keep = 3
    # Steps whose checkpoints are kept besides the newest `keep` (e.g. for critic_check later).
    c.checkpoint.keep_steps = ()
    # The first model fit saves its progress this often (wall seconds; 0: after every epoch) to
    # <workdir>/model_fit_checkpoint and resumes from it bit for bit: with the paper's early
    # stopping on a large dataset it runs for hours. A fit shorter than this writes nothing.
    c.checkpoint.fit_every_seconds = 600


def _baselines(c: ml_collections.ConfigDict) -> None:
    # --- baselines (ampl_jax/baselines; used only when `method` names them) ---------------------
    # BC: a deterministic max_action * tanh(MLP(s)) fitted to the dataset actions by MSE.
    c.bc = ml_collections.ConfigDict()
    c.bc.hidden_dims = (400, 300)
    c.bc.leaky_relu_slope = 0.01  # as AMPL's networks; 0.0 gives plain ReLU
    c.bc.lr = 1e-3
    c.bc.batch_size = 256

    # MOPO (Yu et al. 2020) as its authors ran it (ampl_jax/methods/mopo.py): SAC on minibatches
    # mixing real data with model rollouts whose reward is r - lambda * max_members ||std(s, a)||,
    # in raw reward and state units. Shares the ensemble of `model` and rollout.period; its own
    # horizon, penalty, rollout volume and pool below (rollout.horizon, transitions_per_rollout and
    # buffer_capacity are AMPL's).
    c.mopo = ml_collections.ConfigDict()
    # "published": horizon and lambda are MOPO's for the dataset trained on (mopo.PUBLISHED, from
    # tianheyu927/mopo examples/config/d4rl); "config": mopo.horizon and mopo.penalty_coef below.
    c.mopo.settings = "published"
    c.mopo.horizon = 5  # rollout horizon with settings="config"
    c.mopo.real_ratio = 0.05  # fraction of each minibatch from the offline data (MOPO: 0.05)
    c.mopo.penalty_coef = 1.0  # lambda with settings="config"; the penalty in MOPO's units (see mopo.py)
    # MOPO's rollout volume: rollout_batch_size start states every rollout_every iterations (its
    # model_train_freq), the pool holding model_retain_epochs epochs of epoch_length iterations.
    c.mopo.rollout_batch_size = 50_000
    c.mopo.rollout_every = 1000
    c.mopo.model_retain_epochs = 5
    c.mopo.epoch_length = 1000
    c.mopo.target_entropy = -3.0  # SAC's temperature target (MOPO's d4rl base config: -3 for every task)
    c.mopo.hidden_dims = (256, 256)  # actor and every critic
    c.mopo.num_critics = 2  # Q ensemble size; the target and the actor use the min over them
    c.mopo.batch_size = 256
    c.mopo.gamma = 0.99
    c.mopo.tau = 0.005  # critic target Polyak rate
    c.mopo.actor_lr = 3e-4
    c.mopo.critic_lr = 3e-4
    c.mopo.alpha_lr = 3e-4  # temperature, tuned towards entropy -act_dim
    c.mopo.init_temperature = 1.0

    # TD3+BC (Fujimoto & Gu 2021): TD3 on the offline data (raw rewards, no world model) whose actor
    # maximises lambda * Q1(s, pi(s)) - (pi(s) - a)^2, lambda = alpha / mean |Q1| of the batch.
    # The paper's hyperparameters throughout.
    c.td3bc = ml_collections.ConfigDict()
    c.td3bc.alpha = 2.5
    c.td3bc.normalize_states = True  # s, s' and evaluation observations: (s - mean) / (std + eps)
    c.td3bc.state_norm_eps = 1e-3
    c.td3bc.hidden_dims = (256, 256)  # actor and both critics, ReLU
    c.td3bc.actor_lr = 3e-4
    c.td3bc.critic_lr = 3e-4
    c.td3bc.batch_size = 256
    c.td3bc.gamma = 0.99
    c.td3bc.tau = 0.005  # actor and critic targets, Polyak rate per delayed update
    c.td3bc.policy_noise = 0.2  # target policy smoothing: N(0, (0.2 max_action)^2) ...
    c.td3bc.noise_clip = 0.5  # ... clipped to +-0.5 max_action
    c.td3bc.policy_delay = 2  # critic steps per actor (and target) step; divides rollout.period


def medium_task(env_id: str, family: str, horizon: int) -> ml_collections.ConfigDict:
    """A per-task config: the official Minari medium dataset, with an offline fallback to
    ampl-jax's own `ampl/<family>/medium-v<N>` (N: LOCAL_DATA_VERSION), made on first use from the shipped SAC policy."""
    c = get_config()
    c.dataset.id = f"mujoco/{family}/medium-v0"  # official id: --config.dataset.download=True
    c.dataset.fallback_id = local_dataset_id(family, "medium")
    c.dataset.create_if_missing = True
    c.dataset.create_env = env_id
    c.dataset.create_policy = "medium"
    c.dataset.create_steps = 1_000_000
    c.rollout.horizon = horizon
    return c


def cpu_budget(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Cut `c` to a 20k-iteration run that fits a 2-core CPU (quick start, CPU-scale benchmark).

    A short early-stopping budget for the paper's ensemble, 256-256 agent networks, 4096-transition
    horizon-1 rollouts, and schedules in epochs of 500 iterations: the Q term joins after 8 epochs
    (4k iterations), the real-data fraction starts falling after 10 and reaches 0.5 at epoch 19,
    and the model is refitted with w every 20 epochs (once, at 10k; a paper run has 9 refits).
    """
    c.model.epoch_steps = 200
    c.model.patience = 3
    c.model.max_epochs = 15
    c.model.refit_max_epochs = 5

    c.rollout.horizon = 1
    c.rollout.transitions_per_rollout = 4096
    c.rollout.buffer_capacity = 100_000
    c.rollout.period = 250

    c.agent.hidden_dims = (256, 256)
    c.agent.batch_size = 256
    c.miw.batch_size = 256
    c.miw.mu0_batch_size = 256

    c.train.total_steps = 20_000
    c.train.epoch_length = 500
    c.rollout.real_full_epochs = 10
    c.rollout.real_decay_every = 2
    c.agent.warm_start_epochs = 8
    c.train.model_retrain_epochs = 20
    c.train.eval_every = 2_000
    c.eval.episodes = 5
    c.eval.one_sample_too = True  # at this budget the critic's best-of-N choice is what collapses (README)
    return c
