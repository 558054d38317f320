"""A tiny AMPL config for tests: every component on, networks and budgets shrunk to seconds."""

from configs import quickstart


def get_config():
    c = quickstart.get_config()
    c.dataset.id = "ampl/test/hopper-tiny-v0"
    c.dataset.create_steps = 2_000
    c.model.num_members = 3
    c.model.num_elites = 2
    c.model.hidden_dims = (32, 32)
    c.model.weight_decays = (2.5e-5, 5e-5)
    c.model.batch_size = 32
    c.model.epoch_steps = 20
    c.model.patience = 1
    c.model.max_epochs = 2
    c.model.refit_max_epochs = 1
    c.rollout.transitions_per_rollout = 64
    c.rollout.buffer_capacity = 1_000
    c.rollout.period = 4
    c.agent.hidden_dims = (32, 32)
    c.agent.batch_size = 32
    c.agent.noise_dim = 8
    c.miw.batch_size = 32
    c.miw.mu0_batch_size = 16
    c.miw.phased_steps = 4
    c.train.total_steps = 24
    c.train.epoch_length = 4
    c.rollout.real_full_epochs = 1
    c.agent.warm_start_epochs = 1
    c.train.model_retrain_epochs = 3
    c.train.eval_every = 8
    c.eval.episodes = 2
    c.eval.max_episode_steps = 50
    c.eval.num_action_samples = 3
    return c
