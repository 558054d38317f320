"""Learning benchmark (issue #14): one task x dataset family per config, D4RL's families made here.

    python -m ampl_jax.main --config=configs/benchmark.py:hopper-medium_replay --workdir=runs/b/hmr
    bash launch/benchmark.sh        # every task, family and method, 3 vmapped seeds, resumable

The argument after the colon is `<task>-<family>`: task `hopper` | `walker`, family `medium` |
`medium_replay` | `medium_expert`. Data are ampl-jax's own datasets of that family, made on first
use from the shipped SAC snapshots (medium: 1M steps; medium-replay: the whole shipped replay
buffer up to the medium snapshot; medium-expert: 1M steps of each snapshot, as D4RL), so the
benchmark runs offline. Rollout horizons are the paper's per dataset (ampl-spec.md, section 2).
Budget and schedule: `protocol` below, the same for every method and cell.
"""

from ampl_jax import config_default as default

TASKS = {"hopper": ("Hopper-v5", "hopper"), "walker": ("Walker2d-v5", "walker2d")}
# the paper's rollout horizon per dataset (ampl-spec.md, section 2)
HORIZON = {
    ("hopper", "medium"): 1, ("hopper", "medium-replay"): 1, ("hopper", "medium-expert"): 3,
    ("walker2d", "medium"): 3, ("walker2d", "medium-replay"): 5, ("walker2d", "medium-expert"): 5,
}
STEPS = {"medium": 1_000_000, "medium-replay": 2_000_000, "medium-expert": 2_000_000}


def protocol(c):
    """The budget every cell gets: configs/cpu_scale.py's (20k iterations, 3 vmapped seeds), with
    10-episode evaluations and both evaluation rules logged (README, "Diagnosis").

    The paper's hyperparameters are kept (networks aside: 256-256) and its schedule's phases in
    their order, shortened: GAN-only warm start, real data only, a real-data fraction falling to
    0.5, w-weighted refits. Here the Q term joins at epoch 8, real data only to epoch 10, f = 0.5
    from epoch 19 and one refit at epoch 20, of 40 epochs of 500 (the paper: 40 / 45 / 66 / every
    100, of 1,000 epochs of 1,000), so the early phases take a larger share of a short run.

    The diagnosis found what such a budget cannot reproduce: the paper's evaluation rule, the best
    of N sampled actions by min Q, needs a critic that ranks the actor's samples; at 20k
    iterations it ranks them against their return (best of 1 / 2 / 10 on
    the same episodes: 42.8 / 24.7 / 1.5), in every variant tried (real data only, GAN-only, bf16).
    So the benchmark reports the paper's rule (normalized_score) and the actor's own sample
    (one_sample_normalized_score) side by side; neither is tuned per method."""
    c = default.cpu_budget(c)
    c.num_seeds = 3
    c.bc.hidden_dims = (256, 256)
    c.eval.episodes = 10
    c.checkpoint.every = 10_000
    return c


def get_config(cell: str = "hopper-medium_replay"):
    task, _, family = cell.partition("-")
    family = family.replace("_", "-")
    if task not in TASKS or family not in STEPS:
        raise ValueError(f"unknown benchmark cell {cell!r}: use <task>-<family>, task one of "
                         f"{sorted(TASKS)}, family one of medium, medium_replay, medium_expert")
    env_id, name = TASKS[task]
    c = default.get_config()
    c.dataset.id = default.local_dataset_id(name, family)
    c.dataset.create_if_missing = True
    c.dataset.create_env = env_id
    c.dataset.create_policy = family
    c.dataset.create_steps = STEPS[family]
    c = protocol(c)
    c.rollout.horizon = HORIZON[(name, family)]  # after the budget, which would set 1
    return c
