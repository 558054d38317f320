"""Dataset making, above the data layer: behaviour policies (`policies`: shipped SAC snapshots,
random, mixtures), the online SAC trainer that made them (`train_sac`, `sac`, `snapshots`,
`run_dir`, `mirror`, `curves`), `make_dataset` (real Gymnasium rollouts into a local Minari
dataset) and `source.load_data`, the door through which a run reads its data and makes it when
it is missing. `ampl_jax.data` never imports this package.
"""
