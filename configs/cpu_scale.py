"""CPU-scale learning benchmark: AMPL, NW, BC and TD3+BC on ampl-jax's own medium datasets.

    python -m ampl_jax.main --config=configs/cpu_scale.py:hopper --workdir=runs/cpu/hopper
    python -m ampl_jax.main --config=configs/cpu_scale.py:walker --config.miw.schedule=none ...

The task (`hopper` or `walker`) follows the colon. Data are the per-task configs' offline
fallbacks, `ampl/<env>/medium-v1` (1M steps of the shipped medium SAC policy, made on first use).
Everything that costs time is cut to fit a 2-core CPU (`default.cpu_budget`, shared with the
quick start): 20k iterations with 3 vmapped seeds, smaller networks, rollouts and model-fit
budget, and shorter schedules (Q term after 4k iterations, real-data fraction falling from 5k,
one w-weighted refit at 10k, where a paper run has 9). `launch/cpu_scale.sh` runs the whole
benchmark (with a variant refitting every 4 epochs); the README has its table.
"""

from ampl_jax.config import defaults as default

TASKS = {"hopper": ("Hopper-v5", "hopper"), "walker": ("Walker2d-v5", "walker2d")}


def get_config(task: str = "hopper"):
    if task not in TASKS:
        raise ValueError(f"unknown cpu_scale task {task!r}: use configs/cpu_scale.py:hopper or :walker")
    env_id, family = TASKS[task]
    c = default.cpu_budget(default.medium_task(env_id, family, horizon=1))
    c.num_seeds = 3
    c.bc.hidden_dims = (256, 256)
    # TD3+BC (--config.method=td3bc) keeps the paper's settings (config.td3bc): 256-256 already,
    # and the same budget of 20k critic steps (10k actor steps) in chunks of rollout.period.
    c.checkpoint.every = 10_000
    return c
