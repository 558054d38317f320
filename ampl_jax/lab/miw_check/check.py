"""The whole check, stage by stage: data and AMPL run, target policies, truth, estimators, report.

Every key derives from --seed, in a fixed order, so the numbers reproduce on the same machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np

from ampl_jax import methods
from ampl_jax.config import precision
from ampl_jax.datagen.source import load_data
from ampl_jax.evaluation import make_env
from ampl_jax.methods.ampl import init_state
from ampl_jax.methods.ampl.diagnostics import make_diagnostics
from ampl_jax.methods.ampl.miw_step import make_miw_phase
from ampl_jax.metrics import write_json
from ampl_jax.lab.miw_check import correlation, estimators, report, truth
from ampl_jax.lab.miw_check.ampl_run import ensure_ampl_run, restore_state, world_model
from ampl_jax.lab.miw_check.config import ampl_config, validate, variant_config
from ampl_jax.lab.miw_check.policies import (PolicySpec, behaviour_action_mse, parse_policies, snapshot_agent,
                                         snapshot_params)

Log = Callable[[str], None]
RUN_OWN = "ampl_run_own_w"  # the AMPL run's own interleaved TD-DICE w at the checkpoint
INIT = "initial_w"  # the fresh w every estimator starts from (0 steps)


class _Clock:
    """Wall and process CPU seconds (all threads) of each stage."""

    def __init__(self, log: Log):
        self.log, self.timing = log, {}
        self.start = self.last = (time.time(), time.process_time())

    def stage(self, name: str) -> None:
        now = (time.time(), time.process_time())
        self.timing[name] = {"wall_s": now[0] - self.last[0], "cpu_s": now[1] - self.last[1]}
        self.last = now
        self.log(f"[{name}] wall {self.timing[name]['wall_s']:.0f} s, cpu {self.timing[name]['cpu_s']:.0f} s")

    def total(self) -> dict[str, float]:
        return {"total_wall_s": time.time() - self.start[0], "total_cpu_s": time.process_time() - self.start[1]}


@contextlib.contextmanager
def _minari_store(path: str) -> Iterator[None]:
    """MINARI_DATASETS_PATH set to `path` while the check runs (restored after: a caller's own store)."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = path
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _agents(config, data, info, specs: list[PolicySpec]) -> dict[str, Any]:
    """{"ampl": AMPL's agent, "snapshot": the same with a SnapshotMixture actor (if any spec needs it)}."""
    agents = {"ampl": methods.build_agent(config, data, info)}
    snaps = [s for s in specs if s.kind == "snapshot"]
    if snaps:
        agents["snapshot"] = snapshot_agent(agents["ampl"], info.env_id, snaps[0])
    return agents


def target_policies(opts: dict[str, Any], config, agents: dict[str, Any], data, info, specs: list[PolicySpec],
                    run_dir: str | None, model: Any) -> list[dict[str, Any]]:
    """Each target policy as a TrainState of its agent kind (its actor, and the critic that is
    TD-DICE's test function), with its diagnostics; sorted by action MSE to the data. A snapshot
    policy's state holds `model` (without an AMPL run an unfitted one: its model error reads NaN)."""
    seed = opts["seed"]
    diagnose = {kind: make_diagnostics(a) for kind, a in agents.items()}
    policies = []
    for i, spec in enumerate(specs):
        if spec.kind == "ampl":
            state = restore_state(config, agents["ampl"], data, run_dir, spec.step)
        else:
            params = snapshot_params(info.env_id, spec)
            state = init_state(agents["snapshot"], jax.random.PRNGKey(seed + 3), model)
            state = state.replace(actor=params, actor_target=params)
            state = estimators.fit_critic(agents["snapshot"], state, data, opts["fqe_steps"],
                                          jax.random.PRNGKey(seed + 4 + i))
        diag = diagnose[spec.kind](state, data, jax.random.PRNGKey(seed + 1))
        if run_dir is None:
            diag["diag_model_err_data"] = float("nan")
        policies.append({"spec": dataclasses.asdict(spec), "label": spec.label, "kind": spec.kind,
                         "action_mse": diag["diag_action_mse"], "diagnostics": diag, "estimators": {},
                         "_state": state, "_index": i})
    policies.sort(key=lambda p: p["action_mse"])
    return policies


def add_truth(opts: dict[str, Any], agents: dict[str, Any], data, env_id: str, policies: list[dict[str, Any]],
              log: Log) -> None:
    """w* of every policy (`truth.ground_truth`) and the reference rows w = 1 and the run's own w."""
    for p in policies:
        key = jax.random.fold_in(jax.random.PRNGKey(opts["seed"]), 1000 + p["_index"])
        p["_w_true"], p["truth"] = truth.ground_truth(agents[p["kind"]], p["_state"].actor, data,
                                                      lambda: make_env(env_id), opts, key)
        c, ag, mass = p["truth"]["classifier"], p["truth"]["self_agreement"], p["truth"]["rollouts"]["mass"]
        log(f"{p['label']}: mass {mass:.3f}, classifier held-out log-loss {c['holdout_log_loss']:.3f} "
            f"(chance 0.693), acc {c['holdout_accuracy']:.3f}, E_D[w*]/mass {c['mean_ratio_on_data']:.2f}; "
            f"two fits agree: pearson {ag['pearson']:.3f} spearman {ag['spearman']:.3f}")
        p["estimators"]["w = 1"] = correlation.compare(np.ones(data.size), p["_w_true"])
        if p["kind"] == "ampl":
            own = estimators.miw_on_data(agents["ampl"], p["_state"].miw, data)
            p["estimators"][RUN_OWN] = correlation.compare(own, p["_w_true"])


def add_estimators(opts: dict[str, Any], config, data, info, specs: list[PolicySpec], policies: list[dict[str, Any]],
                   model: Any, clock: _Clock, log: Log) -> dict[str, np.ndarray]:
    """Every estimator of --estimators on every policy, from one fresh w; returns the w arrays."""
    k_w = jax.random.PRNGKey(opts["seed"] + 2)  # the same fresh w (and batches) for every estimator
    arrays = {f"w_true/{p['label']}": p["_w_true"] for p in policies}
    for name in opts["estimators"]:
        agents = _agents(variant_config(config, name, opts["miw_steps"]), data, info, specs)
        steps = agents["ampl"].hp.miw.phase_steps
        # one fresh state for both agent kinds: the MIW parts are the same, and the actor's and
        # critic's fields are replaced by the policy's (the phase reads no optimiser state of theirs)
        fresh = init_state(agents["ampl"], k_w, model)
        phases = {}
        for p in policies:
            agent = agents[p["kind"]]
            if p["kind"] not in phases:
                phases[p["kind"]] = make_miw_phase(agent, steps)
            if INIT not in p["estimators"]:  # every estimator's start: the same init key and network
                p["estimators"][INIT] = correlation.compare(estimators.miw_on_data(agent, fresh.miw, data),
                                                            p["_w_true"])
            w, metrics = estimators.run_estimator(agent, phases[p["kind"]], fresh, p["_state"], data)
            arrays[f"{name}/{p['label']}"] = w
            e = p["estimators"][name] = {**correlation.compare(w, p["_w_true"]), "steps": steps, "miw_metrics": metrics}
            log(f"  {name:>15} on {p['label']}: pearson {e['pearson']:+.3f} spearman {e['spearman']:+.3f} "
                f"E[w] {e['mean_w']:.3f}")
        clock.stage(f"estimator_{name}")
    return arrays


def run(opts: dict[str, Any], log: Log = print) -> dict[str, Any]:
    """The whole check; returns the result dict (also written to opts['out'] as JSON, the w arrays
    to <workdir>/miw_check_w.npz). Raises OptionError for options it cannot run with."""
    validate(opts)
    workdir = os.path.abspath(opts["workdir"])
    os.makedirs(workdir, exist_ok=True)
    with _minari_store(opts["minari_dir"] or os.path.join(workdir, "minari")):
        result, arrays = _run(opts, workdir, log)
    out = opts["out"] or os.path.join(workdir, "miw_check.json")
    write_json(out, result)
    np.savez_compressed(os.path.join(workdir, "miw_check_w.npz"), **arrays)
    log(result["table"])
    log(f"total: wall {result['total_wall_s']:.0f} s, cpu {result['total_cpu_s']:.0f} s ({result['cpu_model']}); "
        f"JSON: {out}")
    return result


def _run(opts: dict[str, Any], workdir: str, log: Log) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    clock = _Clock(log)
    specs = parse_policies(opts["policies"], opts["behaviour"])
    config = ampl_config(opts)
    run_dir = os.path.join(workdir, "ampl_run") if any(s.kind == "ampl" for s in specs) else None

    summary = ensure_ampl_run(config, run_dir, log) if run_dir else None
    data, info = load_data(config, progress=False)
    agents = _agents(config, data, info, specs)
    model = world_model(config, agents["ampl"], data, run_dir)
    clock.stage("dataset_and_ampl_run")

    policies = target_policies(opts, config, agents, data, info, specs, run_dir, model)
    behaviour_mse = behaviour_action_mse(info.env_id, opts["behaviour"], data, opts["seed"])
    mses = ", ".join(f"{p['label']} {p['action_mse']:.4f}" for p in policies)
    log(f"action MSE to the data: {mses}; the behaviour snapshot's own {behaviour_mse}")
    clock.stage("policies_and_critics")

    add_truth(opts, agents, data, info.env_id, policies, log)
    clock.stage("truth")
    arrays = add_estimators(opts, config, data, info, specs, policies, model, clock, log)

    result = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "ampl_jax.lab.miw_check"] + sys.argv[1:]),
        "options": dict(opts),
        "cpu_model": precision.cpu_info()["cpu_model"],
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "dataset": {"id": info.dataset_id, "env": info.env_id, "transitions": data.size,
                    "episodes": info.num_episodes, "init_states": int(data.init_observations.shape[0])},
        "ampl_run": summary and {"dir": run_dir, "final_normalized_score": summary.get("final_normalized_score"),
                                 "final_return_mean": summary.get("final_return_mean")},
        "gamma": float(config.agent.gamma),
        "behaviour_action_mse": behaviour_mse,
        "policies": [{k: v for k, v in p.items() if not k.startswith("_")} for p in policies],
        "timing": clock.timing,
        **clock.total(),
    }
    result["table"] = report.markdown(result)
    return result, arrays
