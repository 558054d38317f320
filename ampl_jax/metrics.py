"""Host-side logging: a CSV + TensorBoard writer, a learning-curve plot, running means, json.

The CSV is the source of truth for plots and for resumed runs: a resumed run first cuts the
file back to its checkpoint step (`truncate_after`) so that no row is duplicated or lost.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CSV_NAME = "metrics.csv"
TB_DIR = "tensorboard"
# metrics.csv column of the score on D4RL's v2 scale, beside the dataset-scale "normalized_score".
D4RL_COLUMN = "d4rl_normalized_score"


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask sets it to read it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The mode of every file a run writes (0644 under the usual umask 022), as open() would create
# them: tempfile.mkstemp makes its files 0600, so the atomic writes below set it explicitly.
FILE_MODE = 0o666 & ~_umask()


def _atomic_write_bytes(path: str, data: bytes) -> None:
    """Readers see either the old file or the new one, never a partial write; the file gets FILE_MODE."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str, obj: Any) -> None:
    """Write `obj` as json atomically (tmp file + os.replace); numpy/JAX values become lists."""
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    _atomic_write_bytes(path, text.encode("utf-8"))


def _read_csv(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and complete rows. A row is written by one append ending in a newline, so a crash
    mid-append can leave only the last line torn: a text not ending in a newline loses its last
    line, and a row with fewer fields than the header is dropped."""
    with open(path, newline="") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = [r for r in reader if None not in r.values() and None not in r]
    return list(reader.fieldnames or []), rows


class MetricsWriter:
    """Appends one row per `write` to workdir/metrics.csv and mirrors it to TensorBoard.

    The first row fixes the columns (step first, then the keys in the order given); later
    rows may leave keys out (written empty) but may not add new ones.
    With `resume=True` an existing metrics.csv is kept (call `truncate_after(step)` with the
    restored checkpoint step); otherwise a new run starts a new file.
    """

    def __init__(self, workdir: str, resume: bool = False):
        self.workdir = workdir
        self.csv_path = os.path.join(workdir, CSV_NAME)
        self.tb_dir = os.path.join(workdir, TB_DIR)
        os.makedirs(workdir, exist_ok=True)
        self._columns: list[str] | None = None
        self._purge_step: int | None = None
        self._tb = None  # created on first write, so that truncate_after can set purge_step
        if resume and os.path.exists(self.csv_path):
            columns, _ = _read_csv(self.csv_path)
            self._columns = columns or None
        elif os.path.exists(self.csv_path):
            os.remove(self.csv_path)

    @property
    def columns(self) -> list[str] | None:
        return None if self._columns is None else list(self._columns)

    def truncate_after(self, step: int) -> int:
        """Keep only rows with step <= `step` (the checkpoint a run resumes from); returns rows kept."""
        self._purge_step = int(step) + 1
        if self._tb is not None:  # reopen so that TensorBoard drops events after `step`
            self._tb.close()
            self._tb = None
        if not os.path.exists(self.csv_path):
            return 0
        columns, rows = _read_csv(self.csv_path)
        kept = [r for r in rows if r.get("step") not in (None, "") and int(r["step"]) <= step]
        with tempfile.SpooledTemporaryFile(mode="w+", newline="") as buf:
            writer = csv.DictWriter(buf, fieldnames=columns)
            writer.writeheader()
            writer.writerows(kept)
            buf.seek(0)
            _atomic_write_bytes(self.csv_path, buf.read().encode("utf-8"))
        return len(kept)

    def add_columns(self, names: Sequence[str]) -> list[str]:
        """Append columns the file lacks (earlier rows get them empty); returns those added.

        For a run resumed from a metrics.csv written before a column existed: `write` refuses
        unknown keys, so the header is extended explicitly, keeping every existing column in place.
        No-op before the first row (that row fixes the columns).
        """
        if self._columns is None:
            return []
        added = [n for n in dict.fromkeys(names) if n not in self._columns]
        if not added:
            return []
        self._columns = [*self._columns, *added]
        if os.path.exists(self.csv_path):
            _, rows = _read_csv(self.csv_path)
            with tempfile.SpooledTemporaryFile(mode="w+", newline="") as buf:
                writer = csv.DictWriter(buf, fieldnames=self._columns, restval="")
                writer.writeheader()
                writer.writerows(rows)
                buf.seek(0)
                _atomic_write_bytes(self.csv_path, buf.read().encode("utf-8"))
        return added

    def _tensorboard(self):
        if self._tb is None:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(self.tb_dir, purge_step=self._purge_step)
        return self._tb

    def write(self, step: int, scalars: Mapping[str, Any], tb_prefix: str = "") -> None:
        """Append one row (values are cast to float) and flush both outputs.

        TensorBoard tags get `tb_prefix` (e.g. "seed3/" when several seeds share one file); a
        "seed" column is a row label, so it goes to the CSV only.
        """
        if "step" in scalars:
            raise ValueError("'step' is the row key, do not pass it among the scalars")
        values = {k: float(v) for k, v in scalars.items()}
        new_file = self._columns is None
        if new_file:
            self._columns = ["step", *values]
        else:
            unknown = [k for k in values if k not in self._columns]
            if unknown:
                raise ValueError(
                    f"metrics {unknown} are not columns of {self.csv_path} "
                    f"(the first row fixed them: {self._columns})"
                )
        row = {"step": int(step), **{k: repr(v) for k, v in values.items()}}
        write_header = new_file or not os.path.exists(self.csv_path)
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, restval="")
            if write_header:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
        tb = self._tensorboard()
        for k, v in values.items():
            if k != "seed":
                tb.add_scalar(tb_prefix + k, v, global_step=int(step))
        tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_column(csv_path: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of column `y`, skipping rows where it is empty."""
    columns, rows = _read_csv(csv_path)
    if y not in columns:
        raise ValueError(f"column {y!r} not in {csv_path} (columns: {columns})")
    pairs = [(int(r["step"]), float(r[y])) for r in rows if r.get(y) not in (None, "")]
    steps = np.array([p[0] for p in pairs], dtype=np.int64)
    values = np.array([p[1] for p in pairs], dtype=np.float64)
    return steps, values


# What 0 and 100 mean on each score column's axis (results.score_scales gives the numbers).
SCORE_AXES = {
    "normalized_score": "normalized score, dataset scale\n(0 = its ref_min_score, 100 = its ref_max_score)",
    D4RL_COLUMN: "normalized score, D4RL v2 scale\n(0 = random, 100 = expert; approximate on v5 envs)",
    "one_sample_normalized_score": "one-sample normalized score, dataset scale\n(0 = its ref_min_score, "
                                   "100 = its ref_max_score)",
    f"one_sample_{D4RL_COLUMN}": "one-sample normalized score, D4RL v2 scale\n(0 = random, 100 = expert)",
    "return_mean": "mean episode return (undiscounted, unnormalized)",
}


def axis_label(column: str) -> str:
    """The y-axis label of a metrics.csv column: a score names its scale; any other column its name."""
    return SCORE_AXES.get(column, column)


def plot_learning_curve(csv_path: str, png_path: str, y: str = "normalized_score") -> int:
    """Save a PNG of column `y` against step; returns the number of (finite) points plotted.

    Uses the Agg canvas directly (no pyplot), so nothing global is touched.
    """
    fig, n = learning_curve_figure(csv_path, y)
    directory = os.path.dirname(os.path.abspath(png_path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".png")
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, png_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return n


def learning_curve_figure(csv_path: str, y: str = "normalized_score"):
    """(matplotlib Figure of column `y` against step, one line per seed; the number of finite points)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps, values = read_column(csv_path, y)
    columns, rows = _read_csv(csv_path)
    seeds = (np.array([float(r["seed"]) for r in rows if r.get(y) not in (None, "")])
             if "seed" in columns else np.zeros(steps.shape))
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    finite = np.isfinite(values)  # e.g. "nan" scores when a dataset has no reference returns
    steps, values, seeds = steps[finite], values[finite], seeds[finite]
    unique = np.unique(seeds)
    for s in unique:  # one line per seed (several seeds share one file when vmapped)
        sel = seeds == s
        ax.plot(steps[sel], values[sel], marker="o" if sel.sum() < 30 else None, lw=1.5,
                alpha=1.0 if unique.size == 1 else 0.6, label=f"seed {int(s)}" if unique.size > 1 else None)
    if unique.size > 1:
        ax.legend(fontsize="small")
    ax.set_xlabel("step (policy iterations)")
    ax.set_ylabel(axis_label(y))
    ax.grid(alpha=0.3)
    if steps.size:
        ax.set_title(f"{y}: last {values[-1]:.4g}, best {values.max():.4g}")
    fig.tight_layout()
    return fig, int(steps.size)


class MeanAccumulator:
    """Running means of metric dicts; values may be scalars or arrays (e.g. stacked by scan).

    Values are kept as given (device arrays too) and fetched only in `means()`, so adding
    does not force a device sync every step. Each element counts once.
    """

    def __init__(self) -> None:
        self._values: dict[str, list[Any]] = {}

    def add(self, metrics: Mapping[str, Any]) -> None:
        for k, v in metrics.items():
            self._values.setdefault(k, []).append(v)

    def means(self) -> dict[str, float]:
        """Mean of every key since the last call (or reset), then reset."""
        out = {}
        for k, vs in self._values.items():
            total, count = 0.0, 0
            for v in vs:
                a = np.asarray(v, dtype=np.float64)
                total += float(a.sum())
                count += a.size
            out[k] = total / count if count else math.nan
        self.reset()
        return out

    def reset(self) -> None:
        self._values = {}

    def state(self) -> dict[str, list[Any]]:
        """The pending values as JSON-ready floats/lists, for checkpoints (float64 round trips exactly)."""
        return {k: [np.asarray(v, dtype=np.float64).tolist() for v in vs] for k, vs in self._values.items()}

    @classmethod
    def from_state(cls, state: Mapping[str, list[Any]]) -> MeanAccumulator:
        """Rebuild from `state()`: `means()` then gives bit-identical results to the original."""
        acc = cls()
        acc._values = {k: list(vs) for k, vs in state.items()}
        return acc



def truncate_jsonl(path: str, step: int) -> int:
    """Keep the lines of a JSON-lines log whose "step" is <= `step` (atomically); returns lines kept.

    Used on resume like `MetricsWriter.truncate_after`: lines written after the checkpoint a run
    resumes from are dropped, since the resumed run writes them again. Unparsable lines go too.
    """
    if not os.path.exists(path):
        return 0
    kept = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
                kept.append(json.dumps(row) + "\n")
    _atomic_write_bytes(path, "".join(kept).encode("utf-8"))
    return len(kept)


def fit_row(step: int, info: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict:
    """One JSON line of model_fits.jsonl: epochs, holdout losses, elites, w stats (no loss history)."""
    return {"step": step, **{k: np.asarray(v).tolist() for k, v in info.items() if k != "train_loss_history"},
            **(extra or {})}
