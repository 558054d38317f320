"""MIW estimators against ground truth on a real MuJoCo task: `python -m ampl_jax.lab.miw_check`.

For a few fixed target policies pi this measures how well each offline MIW estimator of the
package recovers w*(s, a) = d_pi(s, a) / d_D(s, a) on the dataset rows (issue 15, item 3):

1. Data (cached in --workdir, made when missing): a Minari dataset of a shipped behaviour
   snapshot in the real env (`data.make_dataset`), and a short AMPL run on it (the quick start's
   settings, smaller) that checkpoints every --checkpoint_every iterations (`ampl_run`).
2. Target policies (--policies; `policies`), ordered by their action MSE to the data (AMPL's
   `diag_action_mse`): AMPL's actors at checkpoints ("ampl:STEP": the stochastic a ~ pi(s, eps)
   the MIW step samples, not the best-of-N evaluation policy) with that checkpoint's critic as
   TD-DICE's test function; the shipped SAC snapshots and per-step mixtures of two ("behaviour",
   "snapshot:NAME", "mix:A:B:BETA") with a critic fitted to them by AMPL's critic step.
3. Truth (`truth`): pi rolled out in the real env (`occupancy`: every visited (s, a) weighted
   (1 - gamma) gamma^t), a cross-fitted classifier between those and the data rows
   (`classifier`), fitted twice: w* is the mean, their agreement the ceiling.
4. Estimators (`estimators`): AMPL's own MIW phase for each of --estimators, from one fresh w,
   with the policy's actor and critic put in; w on every row scored against w* (`correlation`).

Prints Markdown tables (`report`) and writes JSON (--out) and the w arrays
(<workdir>/miw_check_w.npz).
"""

__all__ = ["OptionError", "run"]


class OptionError(ValueError):
    """An option the check cannot run with; the message says which and what is allowed.

    Defined here, the package's leaf, so that its modules (config, policies, ampl_run) share it
    without importing one another."""


def run(opts, log=print):
    """`check.run` (imported on use: the package's modules import JAX and AMPL)."""
    from ampl_jax.lab.miw_check.check import run as _run

    return _run(opts, log)
