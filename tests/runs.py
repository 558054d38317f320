"""Helpers shared by the subprocess tests of checkpoints, resume and bad input (not a test module).

Every subprocess of a pytest session shares one private Minari store and the session's JAX
persistent compilation cache (tests/conftest.py, inherited through the environment), so only the
first tiny run compiles; the others start in seconds. A cached executable computes exactly what a
fresh compile would, so bit-identity checks are unaffected.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The reference run: 10 chunks of 4 iterations, evaluations every 8, refits at 12, 24, 36,
# checkpoints after every chunk (so half of them hold pending metric sums), the newest 2 kept.
TOTAL_STEPS = 40
RUN_ARGS = [
    "--config=tests/tiny_config.py", "--noprogress", f"--config.train.total_steps={TOTAL_STEPS}",
    "--config.checkpoint.every=4", "--config.checkpoint.keep=2",
]

_SESSION: dict[str, Path] = {}


def tiny_store(tmp_path_factory) -> Path:
    """A Minari store holding tests/tiny_config.py's dataset, made once per session in this process.

    The same make_dataset call `ampl_jax.main` makes for a missing dataset (the config's env,
    policy, steps and seed), done before any run so that runs may share the store, even at once.
    """
    if "minari" not in _SESSION:
        from ampl_jax.datagen.make_dataset import make_dataset
        from tests import tiny_config

        root = tmp_path_factory.getbasetemp() / "tiny_store"
        root.mkdir(exist_ok=True)
        config = tiny_config.get_config()
        d, seed = config.dataset, config.seed
        previous = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = str(root)
        try:
            make_dataset(d.create_env, d.create_policy, d.create_steps, seed, d.id, progress=False)
        finally:
            if previous is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = previous
        _SESSION["minari"] = root
    return _SESSION["minari"]


def session_dirs(tmp_path_factory) -> dict:
    """{'minari', 'ref', 'ref_stdout'}: made once per session (per xdist worker); 'ref' is a finished
    reference run of `python -m ampl_jax.main` (RUN_ARGS), 'ref_stdout' what it printed. The
    resume, bad-input, first-run, main, eval-rules and critic-check tests all read this one run."""
    if "ref" not in _SESSION:
        tiny_store(tmp_path_factory)
        base = tmp_path_factory.getbasetemp() / "ckpt_session"
        base.mkdir(exist_ok=True)
        ref = base / "ref"
        proc = main(RUN_ARGS + [f"--workdir={ref}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        _SESSION.update(ref=ref, ref_stdout=proc.stdout)
    return _SESSION


def env(minari: Path | None = None) -> dict[str, str]:
    """os.environ (with the session's compilation cache) plus CPU, Agg, this checkout, the store."""
    return dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg", PYTHONPATH=str(ROOT),
                MINARI_DATASETS_PATH=str(minari or _SESSION["minari"]))


def main(args: list[str], minari: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ampl_jax.main", *args], cwd=ROOT, env=env(minari),
                          capture_output=True, text=True, timeout=timeout)


def start(args: list[str], stdout_path: Path) -> subprocess.Popen:
    """Start `ampl_jax.main` in the background, output to files (a pipe could fill and block it)."""
    out = open(stdout_path, "w")
    err = open(stdout_path.with_suffix(".err"), "w")
    return subprocess.Popen([sys.executable, "-m", "ampl_jax.main", *args], cwd=ROOT, env=env(),
                            stdout=out, stderr=err, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, workdir: Path, step: int, timeout: float = 300) -> None:
    """Poll until checkpoint `step` is committed (orbax renames it into place when complete)."""
    path = workdir / "checkpoints" / str(step)
    deadline = time.time() + timeout
    while not path.is_dir():
        assert proc.poll() is None, f"run ended (rc {proc.returncode}) before checkpoint {step} appeared"
        assert time.time() < deadline, f"no checkpoint {step} after {timeout}s"
        time.sleep(0.02)


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 120) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def snapshot(*dirs: Path) -> dict[str, str]:
    """sha256 of every file under `dirs` (relative path -> digest): 'nothing changed' is equality.

    The workdir's lock file is left out: every run that takes the lock writes its own pid there
    (rundir.WorkdirLock), also one that is then refused and changes nothing else."""
    out = {}
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.is_file() and p.name != ".lock":
                out[f"{d.name}/{p.relative_to(d)}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, exactly one 'error:' line on stderr and nothing else, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
