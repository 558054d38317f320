"""Every config key in one line: its meaning, and the listing `python -m ampl_jax.main --list_keys` prints.

DESCRIPTIONS holds one line per key of ampl_jax/config/defaults.py (the longer story stays in that
file's comments). A key added there without a line here gets its comment in get_config() instead
(at the end of its line, else right above it or above its group of lines); tests/trainer/test_first_run.py
fails when a key has neither, or when a line here is left for a key that is gone.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import tokenize

import ml_collections

DESCRIPTIONS: dict[str, str] = {
    "seed": "base random seed; the run trains seeds seed .. seed+num_seeds-1",
    "num_seeds": "seeds trained side by side in one program (their scores are averaged in summary.json)",
    "method": "agent to train: ampl (this paper), bc, mopo or td3bc (baselines on the same data and loop)",
    # dataset
    "dataset.id": "Minari dataset id, e.g. mujoco/walker2d/medium-v0 (the local store: $MINARI_DATASETS_PATH)",
    "dataset.download": "fetch dataset.id from the Minari remote when it is not in the local store",
    "dataset.create_if_missing": "make the dataset locally (make_dataset) when it is missing",
    "dataset.create_env": "Gymnasium env used when making the dataset locally, e.g. Hopper-v5",
    "dataset.create_policy": "policy that collects a locally made dataset: random, or a shipped SAC snapshot (medium)",
    "dataset.create_steps": "transitions in a locally made dataset",
    "dataset.fallback_id": "local dataset trained on instead when dataset.id is missing offline ('' = none)",
    "dataset.mu0": "initial-state distribution of MIW: dataset (first state of every episode) or env (env.reset())",
    "dataset.mu0_env_samples": "env.reset() samples drawn when dataset.mu0 is env",
    # model
    "model.num_members": "dynamics models in the ensemble",
    "model.num_elites": "ensemble members with the best holdout loss that sample rollouts",
    "model.hidden_dims": "hidden layer widths of each dynamics model",
    "model.learning_rate": "Adam learning rate of the dynamics models",
    "model.weight_decays": "L2 decay per hidden layer (one per entry of model.hidden_dims)",
    "model.head_weight_decay": "L2 decay of the output heads (mean and log-std)",
    "model.max_logstd_init": "initial upper bound of the learnable log-std (shared by the members)",
    "model.min_logstd_init": "initial lower bound of the learnable log-std",
    "model.logstd_bound_coef": "weight of the log-std bounds' penalty in the model loss",
    "model.batch_size": "minibatch per member (independent indices)",
    "model.epoch_steps": "gradient steps per model-fit epoch",
    "model.holdout_fraction": "fraction of the data held out for early stopping and elite choice",
    "model.max_holdout": "cap on the holdout set's size",
    "model.patience": "model-fit epochs without an improving member before the fit stops",
    "model.improvement_threshold": "relative holdout-loss drop that counts as an improvement",
    "model.max_epochs": "epoch cap of the first model fit",
    "model.refit_max_epochs": "epoch cap of every w-weighted refit",
    "model.rollout_elite_sampling": "how rollouts pick an elite: iid (one per input, as the authors) or balanced",
    "model.fake_elite_sampling": "how the discriminator's fake next states pick an elite: iid or balanced",
    "model.seed_batching": "several seeds' model fits in one program: map (one after another) or vmap",
    # rollout
    "rollout.horizon": "steps of every model rollout",
    "rollout.batch_size": "start states per rollout batch",
    "rollout.transitions_per_rollout": "model transitions added to the buffer at every rollout",
    "rollout.period": "policy iterations between rollouts; total_steps, eval_every, checkpoint.every round up to it",
    "rollout.buffer_capacity": "transitions the model-rollout buffer holds",
    "rollout.real_full_epochs": "epochs trained on real data only (real fraction f = 1)",
    "rollout.real_decay": "amount f drops by every rollout.real_decay_every epochs after that",
    "rollout.real_decay_every": "epochs between drops of the real-data fraction f",
    "rollout.real_min": "floor of the real-data fraction f",
    "rollout.fixed_real_fraction": "a fixed real-data fraction f instead of the schedule (-1 = use the schedule)",
    # agent
    "agent.batch_size": "policy minibatch (real and model transitions mixed by f)",
    "agent.gamma": "discount factor",
    "agent.hidden_dims": "hidden layer widths of actor, critics and discriminator",
    "agent.leaky_relu_slope": "negative slope of the networks' leaky ReLU",
    "agent.critic_lr": "critic Adam learning rate",
    "agent.critic_grad_clip": "critic gradient clip (global norm)",
    "agent.critic_huber_delta": "Huber delta of the critic loss",
    "agent.target_min_weight": "critic target = w min(Q1', Q2') + (1 - w) max(Q1', Q2')",
    "agent.target_cap": "the target drops gamma Q' where |Q'| reaches this cap",
    "agent.tau": "critic target Polyak rate",
    "agent.noise_dim": "noise input size of the implicit actor pi(s, eps)",
    "agent.noise_std": "standard deviation of the actor's noise",
    "agent.noise_clip": "clip of the actor's noise",
    "agent.actor_lr": "actor (generator) Adam learning rate",
    "agent.actor_b1": "actor Adam beta1",
    "agent.actor_update_every": "critic steps per actor step (divides rollout.period)",
    "agent.actor_tau": "actor target Polyak rate",
    "agent.q_coef": "policy loss: -(q_coef / running mean |Q|) * Q + generator loss",
    "agent.q_avg_rate": "rate of the running mean |Q| that scales the Q term",
    "agent.warm_start_epochs": "first epochs with the generator loss only (no Q term)",
    "agent.disc_lr": "discriminator Adam learning rate",
    "agent.disc_b1": "discriminator Adam beta1",
    "agent.true_label_low": "real pairs get labels drawn from U(true_label_low, 1) (label smoothing)",
    "agent.regularizer": "policy regularizer: jsd (the GAN), none, or kl_dual (the authors' KL-dual, with WPR)",
    "agent.weighted_regularizer": "WPR ablation: weight the GAN losses by w * (1 - done)",
    "agent.kl_dual_weighted": "kl_dual: weigh its means by w * (1 - done) (the authors' --use_weight_wpr)",
    "agent.policy": "policy class: implicit (the paper's) or tanh_gaussian (ablation)",
    "agent.gaussian_log_std_bounds": "tanh_gaussian: its log std is clamped into (low, high) (the authors': -20, 2)",
    # miw
    "miw.schedule": "when the marginal importance weights w train: interleaved, phased, or none (NW: w = 1)",
    "miw.alpha": "w = (softplus(x) + 1e-8) ** alpha",
    "miw.output_clipping": "soft-clip w into (1e-8, 500) instead (the authors' --weight_output_clipping)",
    "miw.lr": "TD-DICE learning rate of w",
    "miw.grad_clip": "TD-DICE gradient clip (global norm)",
    "miw.huber_delta": "Huber delta of the TD-DICE loss",
    "miw.mean_bound": "bound of the mean(w) <= bound constraint",
    "miw.constraint": "how the mean(w) constraint applies: per_tensor (the authors') or global",
    "miw.batch_size": "MIW minibatch of transitions",
    "miw.mu0_batch_size": "MIW minibatch of initial states",
    "miw.tau": "Polyak rate of w' and Q1' in the MIW step",
    "miw.last_layer_init": "uniform init range of the MIW nets' last layer",
    "miw.phased_steps": "MIW steps per block of the phased schedule",
    "miw.split_batch_gradient": "unbiased split-batch TD-DICE gradient (not a paper setting)",
    "miw.test_function": "TD-DICE test function: q (Q1) or reward",
    "miw.estimator": "MIW estimator: td_dice (the paper's), vpm, gendice, dualdice or td_dice_multi",
    "miw.td_dice_multi.num_functions": "td_dice_multi: random test functions per step",
    "miw.td_dice_multi.features": "td_dice_multi: random features, fourier or relu",
    "miw.td_dice_multi.scale": "td_dice_multi: frequency scale of the features",
    "miw.td_dice_multi.resample": "td_dice_multi: draw the features afresh every step (False: one fixed draw)",
    "miw.td_dice_multi.seed": "td_dice_multi: seed of the fixed draw",
    "miw.td_dice_multi.with_q": "td_dice_multi: test against Q1 too",
    "miw.td_dice_multi.split_batch_gradient": "td_dice_multi: unbiased split-batch gradient",
    "miw.td_dice_multi.lr": "td_dice_multi: Adam learning rate of w",
    "miw.td_dice_multi.constant": "td_dice_multi: test the constant f_0 = 1 too (its equation fixes the scale of w)",
    "miw.td_dice_multi.mass_penalty": "td_dice_multi: pull of the batch mean w to the mass the constant's equation implies",
    "miw.vpm.lr": "VPM: learning rate of w",
    "miw.vpm.u_lr": "VPM: learning rate of the normalisation multiplier u",
    "miw.vpm.u_init": "VPM: initial u",
    "miw.vpm.norm_penalty": "VPM: weight of the E[w] = 1 penalty",
    "miw.vpm.grad_clip_value": "VPM: element-wise gradient clip (0 = none)",
    "miw.vpm.mask_terminals": "VPM: drop the next-state term at terminal rows",
    "miw.vpm.output_clipping": "VPM: soft-clip w into (1e-8, 500), as the authors' README runs it",
    "miw.vpm.power_iterations": "VPM: power iterations per run",
    "miw.vpm.inner_steps": "VPM: steps per power iteration (target w' refreshed after each)",
    "miw.gendice.lr": "GenDICE: learning rate of w",
    "miw.gendice.nu_lr": "GenDICE: learning rate of nu",
    "miw.gendice.u_lr": "GenDICE: learning rate of u",
    "miw.gendice.u_init": "GenDICE: initial u",
    "miw.gendice.norm_penalty": "GenDICE: weight of the E[w] = 1 penalty",
    "miw.gendice.grad_clip_value": "GenDICE: element-wise gradient clip (0 = none)",
    "miw.gendice.mask_terminals": "GenDICE: drop the next-state term at terminal rows",
    "miw.gendice.output_clipping": "GenDICE: soft-clip w into (1e-8, 500), as the authors' README runs it",
    "miw.dualdice.lr": "DualDICE: learning rate of w",
    "miw.dualdice.nu_lr": "DualDICE: learning rate of nu",
    "miw.dualdice.grad_clip_value": "DualDICE: element-wise gradient clip (0 = none)",
    "miw.dualdice.mask_terminals": "DualDICE: drop the next-state term at terminal rows",
    "miw.dualdice.output_clipping": "DualDICE: soft-clip w into (1e-8, 500), as the authors' README runs it",
    # compute
    "compute.dtype": "matmul input dtype of actor, critics, discriminator and MIW: float32 or bfloat16",
    "compute.model_dtype": "matmul input dtype of the world-model ensemble: float32 or bfloat16",
    "compute.matmul_precision": "jax.default_matmul_precision during training (default: leave JAX's setting)",
    # train, eval, checkpoint
    "train.total_steps": "policy iterations of the run (rounded up to whole rollout periods); raise it to extend a run",
    "train.epoch_length": "iterations per epoch (the schedules count epochs)",
    "train.model_retrain_epochs": "epochs between w-weighted refits of the world model",
    "train.eval_every": "iterations between evaluations (rounded up to whole rollout periods)",
    "eval.episodes": "episodes per evaluation",
    "eval.num_action_samples": "the evaluation acts by the best of N sampled actions by min Q",
    "eval.max_episode_steps": "episode length cap of the evaluation (-1 = the environment's own limit)",
    "eval.one_sample_too": "also score the actor's own single sample (one_sample_* columns of metrics.csv)",
    "checkpoint.every": "iterations between checkpoints (rounded up to whole rollout periods)",
    "checkpoint.keep": "newest checkpoints kept",
    # baselines
    "bc.hidden_dims": "BC: hidden layer widths of the policy",
    "bc.leaky_relu_slope": "BC: negative slope of the leaky ReLU (0 = ReLU)",
    "bc.lr": "BC: Adam learning rate",
    "bc.batch_size": "BC: minibatch",
    "mopo.settings": "MOPO: published (its authors' horizon and lambda for the dataset) or config (the two keys below)",
    "mopo.horizon": "MOPO: rollout horizon when mopo.settings is config",
    "mopo.real_ratio": "MOPO: fraction of each minibatch from the offline data",
    "mopo.penalty_coef": "MOPO: lambda of the uncertainty penalty when mopo.settings is config",
    "mopo.rollout_batch_size": "MOPO: start states of model rollouts every mopo.rollout_every iterations",
    "mopo.rollout_every": "MOPO: iterations per mopo.rollout_batch_size rollouts (its model_train_freq)",
    "mopo.model_retain_epochs": "MOPO: epochs of rollouts the model pool keeps",
    "mopo.epoch_length": "MOPO: iterations per epoch of the model pool",
    "mopo.target_entropy": "MOPO: SAC temperature's entropy target (its d4rl configs: -3)",
    "mopo.hidden_dims": "MOPO: hidden layer widths of actor and critics",
    "mopo.num_critics": "MOPO: critics in the Q ensemble",
    "mopo.batch_size": "MOPO: minibatch",
    "mopo.gamma": "MOPO: discount factor",
    "mopo.tau": "MOPO: critic target Polyak rate",
    "mopo.actor_lr": "MOPO: actor learning rate",
    "mopo.critic_lr": "MOPO: critic learning rate",
    "mopo.alpha_lr": "MOPO: SAC temperature learning rate",
    "mopo.init_temperature": "MOPO: initial SAC temperature",
    "td3bc.alpha": "TD3+BC: alpha of lambda = alpha / mean |Q1|",
    "td3bc.normalize_states": "TD3+BC: standardise the states",
    "td3bc.state_norm_eps": "TD3+BC: eps of (s - mean) / (std + eps)",
    "td3bc.hidden_dims": "TD3+BC: hidden layer widths of actor and critics",
    "td3bc.actor_lr": "TD3+BC: actor learning rate",
    "td3bc.critic_lr": "TD3+BC: critic learning rate",
    "td3bc.batch_size": "TD3+BC: minibatch",
    "td3bc.gamma": "TD3+BC: discount factor",
    "td3bc.tau": "TD3+BC: target Polyak rate",
    "td3bc.policy_noise": "TD3+BC: target policy smoothing noise (times max_action)",
    "td3bc.noise_clip": "TD3+BC: clip of that noise (times max_action)",
    "td3bc.policy_delay": "TD3+BC: critic steps per actor step (divides rollout.period)",
}


@functools.cache
def inline_comments() -> dict[str, str]:
    """{dotted key: its comment in config_default.get_config()} (`comments_of`)."""
    from ampl_jax.config import defaults as config_default

    return comments_of(inspect.getsource(config_default))


def comments_of(source: str) -> dict[str, str]:
    """{dotted key: its comment} in the get_config() of a config module's `source` and the module's
    functions it calls (its sections): the comment at the end of its assignment line, else the
    comment lines right above it (joined), else those above the run of assignments (no blank line
    between) that it belongs to."""
    functions = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    fn = functions["get_config"]
    called = [c.func.id for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
    fns = [fn] + [functions[name] for name in dict.fromkeys(called) if name in functions]
    trailing, whole_line = {}, {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and any(f.lineno <= tok.start[0] <= f.end_lineno for f in fns):
            text = tok.string.lstrip("#").strip()
            if not text.startswith("---"):  # a section rule ("--- data ----") says nothing of a key
                (trailing if tok.line[:tok.start[1]].strip() else whole_line)[tok.start[0]] = text
    out: dict[str, str] = {}
    group, previous_end = None, None
    for node in (node for f in fns for node in f.body):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            group, previous_end = None, None
            continue
        above, n = [], node.lineno - 1
        while n in whole_line:
            above.insert(0, whole_line[n])
            n -= 1
        if above:
            group = " ".join(above)
        elif previous_end != node.lineno - 1:  # a blank line ends a run of assignments
            group = None
        previous_end = node.end_lineno
        target = ast.unparse(node.targets[0])
        if not target.startswith("c."):
            continue
        line = next((n for n in range(node.lineno, node.end_lineno + 1) if n in trailing), None)
        text = trailing[line] if line is not None else group
        if text:
            out[target[2:]] = text
    return out


def meaning(key: str) -> str | None:
    """The key's one-line meaning: its DESCRIPTIONS line, else its comment in config_default.py."""
    return DESCRIPTIONS.get(key) or inline_comments().get(key)


def flat_values(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
    """Every leaf key of `config`, dotted, with its value (in the config's order)."""
    out: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out.update(flat_values(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def listing(config: ml_collections.ConfigDict, source: str) -> str:
    """`KEY=VALUE  # meaning` for every key of `config` (in DESCRIPTIONS' order: that of
    config_default.py), under a header naming `source`."""
    values = flat_values(config)
    order = {key: i for i, key in enumerate(DESCRIPTIONS)}
    keys = sorted(values, key=lambda k: (order.get(k, len(order)), k))
    cells = [(f"{key}={values[key]!r}", meaning(key) or "(no description)") for key in keys]
    width = min(max(len(c[0]) for c in cells), 48)
    lines = [f"# {len(values)} config keys, with their values in {source}; change one with --config.KEY=VALUE"]
    lines += [f"{left:<{width}}  # {meaning}" for left, meaning in cells]
    return "\n".join(lines)
