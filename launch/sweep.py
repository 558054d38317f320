"""Sweep launcher: datasets x seeds x config overrides -> one `ampl_jax.main` run per cell.

    python -m launch.sweep --config=configs/hopper.py \
        --datasets=mujoco/hopper/medium-v0,mujoco/hopper/medium-expert-v0 --seeds=0-4 \
        --grid='rollout.horizon=1,3;miw.schedule=interleaved,phased' --root=runs/sweep --parallel=2

Each run gets ROOT/<dataset>/<tag>/seed<k> as workdir (dataset id with "/" -> "_", tag = the
grid values, e.g. `rollout.horizon=1+miw.schedule=phased`, or `base` without a grid), so that
`python -m ampl_jax.report ROOT` can tabulate the results. Runs whose summary.json exists are
skipped (resumable sweeps) unless --rerun. `--dry_run` prints every command and runs nothing.
With `--tpu=NAME` the launcher instead prints and runs the gcloud commands that create a Cloud
TPU VM, copy this code to every worker and start the same sweep there, each worker taking its
share of the runs (--num_shards/--shard_index, `auto` reads them from the TPU VM metadata).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Config file passed to every run, e.g. configs/hopper.py.")
flags.DEFINE_list("datasets", [], "Dataset ids (comma separated); empty: the config's own dataset.id.")
flags.DEFINE_string("seeds", "0", "Seeds: a comma list with inclusive ranges, e.g. '0-4' or '0,1,7'.")
flags.DEFINE_string("grid", "", "Override grid, 'KEY=V1,V2;KEY2=V3,V4' (cartesian product; brackets "
                    "protect commas, e.g. 'model.hidden_dims=(200,200),(400,400)').")
flags.DEFINE_string("grid_file", "", "JSON grid: {KEY: [values]} (a product) or a list of such objects "
                    "(a union of products). Exclusive with --grid.")
flags.DEFINE_string("root", "runs/sweep", "Root directory of the sweep's run folders.")
flags.DEFINE_integer("parallel", 1, "Runs executed at once (local processes). Use 1 on a TPU host.")
flags.DEFINE_bool("rerun", False, "Run again even where summary.json exists (ampl_jax.main resumes from the "
                  "workdir's checkpoints; delete the folder to start over).")
flags.DEFINE_bool("dry_run", False, "Print the commands (a shell script) and run nothing.")
flags.DEFINE_bool("progress", False, "Let runs draw progress bars (noisy in log files).")
flags.DEFINE_string("num_shards", "1", "Split the runs into this many shards ('auto': TPU VM workers).")
flags.DEFINE_string("shard_index", "0", "Shard this launcher executes: runs i with i % num_shards == "
                    "shard_index ('auto': this TPU VM worker's number).")
flags.DEFINE_string("python", sys.executable, "Interpreter that runs each run.")
flags.DEFINE_string("main_module", "ampl_jax.main", "Module run with `python -m` (tests use a fake one).")
# --- Cloud TPU VM ----------------------------------------------------------------------------
flags.DEFINE_string("tpu", "", "TPU VM name: print and run the gcloud commands instead of local runs.")
flags.DEFINE_string("zone", "us-central2-b", "TPU zone.")
flags.DEFINE_string("accelerator_type", "v4-8", "TPU accelerator type, e.g. v4-8, v5litepod-8, v6e-8.")
flags.DEFINE_string("tpu_version", "", "TPU VM software version; empty: a default for the accelerator.")
flags.DEFINE_string("project", "", "GCP project (gcloud's default when empty).")
flags.DEFINE_list("tpu_steps", ["create", "copy", "start"],
                  "Steps in order, from create, copy, start, fetch, delete.")
flags.DEFINE_integer("tpu_workers", 0, "Workers (hosts) of the TPU VM; 0: inferred from the accelerator type.")
flags.DEFINE_bool("tpu_multihost", False, "Multi-host slice: every run is ONE job over all workers (AMPL_MULTIHOST=1, "
                  "each host trains num_seeds/workers of its seeds, worker 0 writes the run) instead of "
                  "each worker running its own share of the runs.")
flags.DEFINE_multi_string("tpu_env", [], "KEY=VALUE environment for the sweep on every worker (repeat the "
                         "flag), e.g. the libtpu topology variables that make each host its own slice.")
flags.DEFINE_string("remote_dir", "ampl-jax", "Code directory on the workers, relative to home.")

COPIED_PATHS = ("ampl_jax", "configs", "launch", "pyproject.toml", "README.md")
TPU_STEPS = ("create", "copy", "start", "fetch", "delete")
_METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/"


class SweepError(ValueError):
    """A problem with the sweep's flags that the user can fix."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One cell of the sweep: its workdir and its argv (without the interpreter)."""

    dataset: str
    tag: str
    seed: int
    workdir: str
    args: tuple[str, ...]

    def command(self, python: str) -> list[str]:
        return [python, *self.args]


# --- grid parsing ------------------------------------------------------------------------------

def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside (), [] and quotes, so tuple values keep their commas."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_seeds(text: str) -> list[int]:
    """'0-2,7' -> [0, 1, 2, 7] (ranges are inclusive; duplicates are an error)."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        try:
            seeds.extend(range(int(m[1]), int(m[2]) + 1) if m else [int(part)])
        except ValueError:
            raise SweepError(f"bad --seeds entry {part!r}: use e.g. '0,1,2' or '0-4'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds={text!r} must name at least one seed, each once")
    return seeds


def format_value(value: Any) -> str:
    """A JSON/Python value as an ml_collections override string (lists become tuples)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def _check_key(key: str) -> str:
    key = key.strip().removeprefix("--").removeprefix("config.")
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key):
        raise SweepError(f"bad grid key {key!r}: use dotted config keys such as rollout.horizon")
    if key in ("seed", "dataset.id"):
        raise SweepError(f"{key} is set by --seeds/--datasets, not by the grid")
    return key


def parse_grid(text: str) -> list[dict[str, list[str]]]:
    """'a.b=1,3;c=x' -> [{'a.b': ['1', '3'], 'c': ['x']}] (one product)."""
    axes: dict[str, list[str]] = {}
    for item in filter(None, (s.strip() for s in _split_top(text, ";"))):
        if "=" not in item:
            raise SweepError(f"bad --grid entry {item!r}: expected KEY=V1,V2")
        key, values = item.split("=", 1)
        key = _check_key(key)
        vals = [v.strip() for v in _split_top(values, ",") if v.strip()]
        if not vals or key in axes:
            raise SweepError(f"--grid entry {item!r}: give each key once, with at least one value")
        axes[key] = vals
    return [axes] if axes else []


def load_grid_file(path: str) -> list[dict[str, list[str]]]:
    """JSON {KEY: [values] | value} or a list of those; scalars are one-value axes."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SweepError(f"cannot read --grid_file {path}: {e}") from None
    products = data if isinstance(data, list) else [data]
    out = []
    for prod in products:
        if not isinstance(prod, dict) or not prod:
            raise SweepError(f"--grid_file {path}: expected an object or a list of non-empty objects")
        out.append({_check_key(k): [format_value(v) for v in (vs if isinstance(vs, list) else [vs])]
                    for k, vs in prod.items()})
    return out


def expand_grid(products: Sequence[Mapping[str, Sequence[str]]]) -> list[list[tuple[str, str]]]:
    """Every combination, in the order given; [[]] (one empty variant) without a grid."""
    variants: list[list[tuple[str, str]]] = []
    for prod in products:
        keys = list(prod)
        for values in itertools.product(*(prod[k] for k in keys)):
            variant = list(zip(keys, values))
            if variant not in variants:
                variants.append(variant)
    return variants or [[]]


def variant_tag(variant: Sequence[tuple[str, str]]) -> str:
    """Folder name of a variant: 'rollout.horizon=1+miw.schedule=phased', 'base' if empty."""
    if not variant:
        return "base"
    parts = [f"{k}={re.sub(r'[^A-Za-z0-9_.,=-]', '', v.replace('/', '_')) or '_'}" for k, v in variant]
    return "+".join(parts)


def dataset_folder(dataset_id: str) -> str:
    return dataset_id.replace("/", "_")


def config_dataset_id(config: str) -> str:
    """dataset.id of a config file (for the folder name when --datasets is empty)."""
    from ampl_jax.config import validation as configuration

    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)  # configs that import `configs.*`
    try:
        return str(configuration.load_file(config).dataset.id)
    except configuration.ConfigError as e:
        raise SweepError(str(e)) from None


def build_runs(config: str, datasets: Sequence[str], seeds: Sequence[int],
               variants: Sequence[Sequence[tuple[str, str]]], root: str, *,
               main_module: str = "ampl_jax.main", progress: bool = False,
               extra_args: Sequence[str] = ()) -> list[Run]:
    """The sweep's runs, ordered dataset -> variant -> seed.

    An empty dataset string passes no dataset override; the config's own dataset id then names
    the folder.
    """
    runs = []
    for ds in datasets:
        ds_name = ds or config_dataset_id(config)
        for variant in variants:
            tag = variant_tag(variant)
            for seed in seeds:
                workdir = os.path.join(root, dataset_folder(ds_name), tag, f"seed{seed}")
                args = ["-m", main_module, f"--config={config}", f"--workdir={workdir}", f"--config.seed={seed}"]
                if ds:
                    args.append(f"--config.dataset.id={ds}")
                args += [f"--config.{k}={v}" for k, v in variant]
                if not progress:
                    args.append("--noprogress")
                args += list(extra_args)
                runs.append(Run(ds_name, tag, seed, workdir, tuple(args)))
    return runs


# --- sharding ----------------------------------------------------------------------------------

def _tpu_metadata(attribute: str) -> str:
    req = urllib.request.Request(_METADATA + attribute, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode().strip()


def resolve_shards(num_shards: str, shard_index: str) -> tuple[int, int]:
    """(num_shards, shard_index); 'auto' asks the TPU VM metadata server (worker count/number)."""
    try:
        n = (len(_tpu_metadata("worker-network-endpoints").split(",")) if num_shards == "auto"
             else int(num_shards))
        i = int(_tpu_metadata("agent-worker-number")) if shard_index == "auto" else int(shard_index)
    except OSError as e:
        raise SweepError(f"'auto' shards need the TPU VM metadata server ({e}); give numbers instead") from None
    except ValueError:
        raise SweepError(f"--num_shards/--shard_index must be integers or 'auto', got {num_shards}/{shard_index}") from None
    if n < 1 or not 0 <= i < n:
        raise SweepError(f"need 0 <= shard_index < num_shards, got {i} and {n}")
    return n, i


def shard(runs: Sequence[Run], num_shards: int, shard_index: int) -> list[Run]:
    """Round robin, so that every shard gets a mix of datasets and variants."""
    return [r for j, r in enumerate(runs) if j % num_shards == shard_index]


# --- local execution ---------------------------------------------------------------------------

def is_done(run: Run) -> bool:
    return os.path.exists(os.path.join(run.workdir, "summary.json"))


CLAIM = ".sweep_claim"  # in a workdir while a launcher runs it: "<host> <pid>"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def claim(workdir: str) -> bool:
    """Take the run for this launcher, so that two sweeps over one root (two lanes of
    launch/benchmark.sh, say) never run the same workdir at once: the second skips it and moves on.
    A claim left by a dead launcher on this host is taken over; one from another host is honoured
    (delete the file if that host is gone)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CLAIM)
    me = f"{os.uname().nodename} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                host, pid = open(path).read().split()
            except (OSError, ValueError):
                return False  # being written by its owner this instant, or unreadable: leave it
            if host != os.uname().nodename or _alive(int(pid)):
                return False
            try:
                os.remove(path)  # stale: its launcher died without releasing it
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return True
    return False


def release(workdir: str) -> None:
    try:
        os.remove(os.path.join(workdir, CLAIM))
    except FileNotFoundError:
        pass


def dry_run_lines(runs: Sequence[Run], python: str, rerun: bool = False) -> list[str]:
    """The commands as a shell script; runs that would be skipped are commented out."""
    lines = []
    for run in runs:
        cmd = shlex.join(run.command(python))
        lines.append(cmd if rerun or not is_done(run) else f"# done (summary.json exists): {cmd}")
    return lines


def execute(runs: Sequence[Run], python: str, *, parallel: int = 1, rerun: bool = False,
            env: Mapping[str, str] | None = None, poll_s: float = 0.2, log=print) -> dict[str, Any]:
    """Run each command with stdout/stderr in its workdir, `parallel` at a time.

    Returns {workdir: exit code, 'skipped' (done) or 'busy' (another launcher is running it)};
    Ctrl-C terminates the runs this call started.
    """
    pending = [r for r in runs if rerun or not is_done(r)]
    results: dict[str, Any] = {r.workdir: "skipped" for r in runs if r not in pending}
    for w in results:
        log(f"skip {w} (summary.json exists; --rerun to run again)")
    active: list[tuple[Run, subprocess.Popen, float, list]] = []
    total, started = len(pending), 0
    try:
        while pending or active:
            while pending and len(active) < max(1, parallel):
                run = pending.pop(0)
                started += 1
                if not claim(run.workdir):
                    results[run.workdir] = "busy"
                    log(f"[{started}/{total}] busy {run.workdir} (another launcher runs it: "
                        f"{os.path.join(run.workdir, CLAIM)})")
                    continue
                if not rerun and is_done(run):  # finished by another launcher since the listing
                    release(run.workdir)
                    results[run.workdir] = "skipped"
                    log(f"skip {run.workdir} (summary.json exists; --rerun to run again)")
                    continue
                cmd = run.command(python)
                with open(os.path.join(run.workdir, "command.sh"), "w") as f:
                    f.write(shlex.join(cmd) + "\n")
                files = [open(os.path.join(run.workdir, n), "w") for n in ("stdout.log", "stderr.log")]
                proc = subprocess.Popen(cmd, stdout=files[0], stderr=files[1], stdin=subprocess.DEVNULL,
                                        env=None if env is None else dict(env))
                active.append((run, proc, time.time(), files))
                log(f"[{started}/{total}] start {run.workdir}")
            time.sleep(poll_s if active else 0)
            for item in list(active):
                run, proc, t0, files = item
                rc = proc.poll()
                if rc is None:
                    continue
                active.remove(item)
                for f in files:
                    f.close()
                release(run.workdir)
                results[run.workdir] = rc
                status = "ok" if rc == 0 else f"FAILED rc={rc}, see {os.path.join(run.workdir, 'stderr.log')}"
                log(f"done {run.workdir} in {time.time() - t0:.0f}s: {status}")
    finally:
        # Only reached with active runs on an exception (Ctrl-C): SIGTERM makes ampl_jax.main save
        # a checkpoint and exit 143, so running the sweep again resumes these runs.
        for run, proc, _, files in active:
            proc.terminate()
        for run, proc, _, files in active:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for f in files:
                f.close()
            release(run.workdir)
    return results


def summarise(results: Mapping[str, Any]) -> tuple[str, bool]:
    """One block of text with the counts and every failed workdir; True if all succeeded."""
    failed = {w: rc for w, rc in results.items() if rc not in (0, "skipped", "busy")}
    ok = sum(rc == 0 for rc in results.values())
    skipped = sum(rc == "skipped" for rc in results.values())
    busy = sum(rc == "busy" for rc in results.values())
    lines = [f"sweep: {ok} ok, {len(failed)} failed, {skipped} skipped"
             + (f", {busy} busy (run by another launcher)" if busy else "") + f" of {len(results)} runs"]
    lines += [f"  FAILED (exit {rc}{', stopped: run again to resume' if rc in (143, -15) else ''}): {w}"
              for w, rc in failed.items()]
    return "\n".join(lines), not failed


# --- Cloud TPU VM ------------------------------------------------------------------------------

def default_tpu_version(accelerator_type: str) -> str:
    """The TPU VM base image Google documents for each generation."""
    if accelerator_type.startswith("v5litepod") or accelerator_type.startswith("v5e"):
        return "v2-alpha-tpuv5-lite"
    if accelerator_type.startswith("v5p"):
        return "v2-alpha-tpuv5"
    if accelerator_type.startswith("v6e"):
        return "v2-alpha-tpuv6e"
    return "tpu-ubuntu2204-base"


def tpu_hosts(accelerator_type: str) -> int:
    """Hosts of a slice: v2-v4 and v5p count TensorCores (8 per host), v5e/v6e count chips
    (one host up to 8 chips, 4 chips per host in larger slices)."""
    m = re.fullmatch(r"(v\d+\w*?)-(\d+)", accelerator_type)
    if not m:
        raise SweepError(f"cannot infer workers of --accelerator_type={accelerator_type}; give --tpu_workers")
    gen, n = m[1], int(m[2])
    if gen.startswith(("v5litepod", "v5e", "v6e")):
        return 1 if n <= 8 else n // 4
    return max(1, n // 8)


def remote_sweep_args(config: str, datasets: Sequence[str], seeds: str, grid: str, grid_file: str,
                      root: str, parallel: int, rerun: bool, progress: bool,
                      extra_args: Sequence[str], workers: int = 1,
                      shards: tuple[str, str] = ("1", "0"), multihost: bool = False) -> list[str]:
    """The `launch.sweep` argv every worker runs.

    On multi-host slices each worker takes the shard of its worker number; on one host the
    given (num_shards, shard_index) pass through, so that several one-host VMs can split a sweep.
    `multihost`: every worker runs every run (one multi-process job each), with --rerun so that
    all workers run the same list (only worker 0 has the summaries; a finished run resumes at
    its end in seconds).
    """
    args = ["python3", "-m", "launch.sweep", f"--config={config}"]
    if datasets:
        args.append("--datasets=" + ",".join(datasets))
    args += [f"--seeds={seeds}", f"--root={root}", f"--parallel={parallel}"]
    if multihost:
        args.append("--rerun")
    elif workers > 1:
        args += ["--num_shards=auto", "--shard_index=auto"]
    elif shards[0] != "1":
        args += [f"--num_shards={shards[0]}", f"--shard_index={shards[1]}"]
    if grid:
        args.append(f"--grid={grid}")
    if grid_file:
        args.append(f"--grid_file={grid_file}")
    if rerun and not multihost:
        args.append("--rerun")
    if progress:
        args.append("--progress")
    if extra_args:
        args += ["--", *extra_args]
    return args


def tpu_commands(name: str, zone: str, accelerator_type: str, version: str, project: str,
                 steps: Sequence[str], sweep_args: Sequence[str], root: str, *,
                 extra_copy: Sequence[str] = (), remote_dir: str = "ampl-jax",
                 workers: int = 1, env: Sequence[str] = (), multihost: bool = False) -> list[list[str]]:
    """gcloud argv lists for the chosen steps (create, copy, start, fetch, delete).

    `start` installs the package with its `tpu` extra (jax[tpu]) and starts the sweep detached (nohup) on every
    worker, its log in REMOTE_DIR/ROOT/sweep-worker<k>.log; `fetch` copies each worker's run
    folders back into the local ROOT (folders of different runs never collide).
    """
    unknown = [s for s in steps if s not in TPU_STEPS]
    if unknown:
        raise SweepError(f"unknown --tpu_steps {unknown}: choose from {', '.join(TPU_STEPS)}")
    tpu = ["gcloud", "compute", "tpus", "tpu-vm"]
    where = [f"--zone={zone}"] + ([f"--project={project}"] if project else [])
    q = shlex.quote
    cmds = []
    for step in steps:
        if step == "create":
            cmds.append([*tpu, "create", name, *where, f"--accelerator-type={accelerator_type}",
                         f"--version={version or default_tpu_version(accelerator_type)}"])
        elif step == "copy":
            cmds.append([*tpu, "ssh", name, *where, "--worker=all", f"--command=mkdir -p {q(remote_dir)}"])
            cmds.append([*tpu, "scp", "--recurse", *COPIED_PATHS, *extra_copy, f"{name}:~/{remote_dir}/",
                         *where, "--worker=all"])
        elif step == "start":
            worker = f"$(curl -s -H Metadata-Flavor:Google {_METADATA}agent-worker-number)" if workers > 1 else "0"
            log = f"{q(root)}/sweep-worker{worker}.log"
            prefix = shlex.join(["env", *env]) + " " if env else ""
            script = (f"cd {q(remote_dir)} && python3 -m pip install -q -e '.[tpu]' && mkdir -p {q(root)} && "
                      f"nohup {prefix}{shlex.join(sweep_args)} > {log} 2>&1 < /dev/null &")
            cmds.append([*tpu, "ssh", name, *where, "--worker=all", f"--command={script}"])
        elif step == "fetch":
            parent = os.path.dirname(os.path.normpath(root)) or "."
            for w in range(1 if multihost else workers):  # multihost: only worker 0 writes runs
                cmds.append([*tpu, "scp", "--recurse", f"{name}:~/{remote_dir}/{os.path.normpath(root)}",
                             parent, *where, f"--worker={w}"])
        elif step == "delete":
            cmds.append([*tpu, "delete", name, *where, "--quiet"])
    return cmds


# --- CLI ---------------------------------------------------------------------------------------

def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def _variants() -> list[list[tuple[str, str]]]:
    if FLAGS.grid and FLAGS.grid_file:
        raise SweepError("give --grid or --grid_file, not both")
    return expand_grid(load_grid_file(FLAGS.grid_file) if FLAGS.grid_file else parse_grid(FLAGS.grid))


def _main_tpu(extra_args: list[str]) -> int:
    parse_seeds(FLAGS.seeds)
    _variants()  # fail here, not on the workers
    extra_copy = []
    bad_env = [e for e in FLAGS.tpu_env if not re.fullmatch(r"[A-Za-z_]\w*=.*", e)]
    if bad_env:
        raise SweepError(f"--tpu_env entries must be KEY=VALUE, got {bad_env}")
    for path in (FLAGS.config.split(":", 1)[0], FLAGS.grid_file):
        if path and os.path.normpath(path).split(os.sep)[0] not in COPIED_PATHS:
            if os.path.isabs(path) or path.startswith(".."):
                raise SweepError(f"{path} must lie inside the repository to reach the workers")
            extra_copy.append(path)
    workers = FLAGS.tpu_workers or tpu_hosts(FLAGS.accelerator_type)
    sweep_args = remote_sweep_args(FLAGS.config, FLAGS.datasets, FLAGS.seeds, FLAGS.grid, FLAGS.grid_file,
                                   FLAGS.root, FLAGS.parallel, FLAGS.rerun, FLAGS.progress, extra_args, workers,
                                   (FLAGS.num_shards, FLAGS.shard_index), FLAGS.tpu_multihost)
    env = list(FLAGS.tpu_env) + (["AMPL_MULTIHOST=1"] if FLAGS.tpu_multihost else [])
    cmds = tpu_commands(FLAGS.tpu, FLAGS.zone, FLAGS.accelerator_type, FLAGS.tpu_version, FLAGS.project,
                        FLAGS.tpu_steps, sweep_args, FLAGS.root, extra_copy=extra_copy,
                        remote_dir=FLAGS.remote_dir, workers=workers, env=env, multihost=FLAGS.tpu_multihost)
    for cmd in cmds:
        print(shlex.join(cmd), flush=True)
        if not FLAGS.dry_run:
            rc = subprocess.call(cmd)
            if rc != 0:
                print(f"error: exit {rc} from: {shlex.join(cmd)}", file=sys.stderr, flush=True)
                return rc
    return 0


def main(argv: list[str]) -> None:
    extra_args = argv[1:]  # everything after `--`, appended to every run
    if FLAGS.config is None:
        _fail("--config is required, e.g. --config=configs/hopper.py")
    try:
        if FLAGS.tpu:
            sys.exit(_main_tpu(extra_args))
        seeds = parse_seeds(FLAGS.seeds)
        num_shards, shard_index = resolve_shards(FLAGS.num_shards, FLAGS.shard_index)
        runs = build_runs(FLAGS.config, FLAGS.datasets or [""], seeds, _variants(), FLAGS.root,
                          main_module=FLAGS.main_module, progress=FLAGS.progress, extra_args=extra_args)
    except SweepError as e:
        _fail(str(e))
    mine = shard(runs, num_shards, shard_index)
    shard_note = f" (shard {shard_index} of {num_shards})" if num_shards > 1 else ""
    if FLAGS.dry_run:
        print(f"# {len(mine)} of {len(runs)} runs{shard_note}")
        print("\n".join(dry_run_lines(mine, FLAGS.python, FLAGS.rerun)), flush=True)
        return
    print(f"sweep: {len(mine)} of {len(runs)} runs{shard_note}, {FLAGS.parallel} at a time", flush=True)
    results = execute(mine, FLAGS.python, parallel=FLAGS.parallel, rerun=FLAGS.rerun,
                      log=lambda s: print(s, flush=True))
    text, all_ok = summarise(results)
    print(text, flush=True)
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    app.run(main)
