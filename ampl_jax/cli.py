"""The command-line tail the analysis tools share: rows -> markdown table (+ JSON), one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from ampl_jax.checkpoint import CheckpointError


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run_cli(compute: Callable[[], list[dict]], to_markdown: Callable[[list[dict]], str], out_file: str) -> None:
    """Print the rows `compute` returns as markdown (and write them as JSON to out_file); a bad
    input (ValueError, e.g. DatasetError; OSError; CheckpointError) is one line on stderr, exit 1."""
    try:
        rows = compute()
    except (ValueError, OSError, CheckpointError) as e:
        raise SystemExit(f"error: {str(e).splitlines()[0]}") from None
    print(to_markdown(rows))
    if out_file:
        with open(out_file, "w") as f:
            json.dump(rows, f, indent=1)
