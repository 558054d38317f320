"""The lab: research and benchmarking tools beside the trainer, none of which a training run needs.

`bench` (speed, `ampl-bench`), `compare` (two runs' curves), `critic_check` and `eval_rules` (does
the critic rank the actor's samples?), `miw_check` (the MIW against ground truth), `programs` and
`cost_model` (every program a run compiles, lowered for GPU/TPU and costed by XLA). Each runs as
`python -m ampl_jax.lab.<tool>`.
"""
