"""The first ten minutes of a new user (issue #33): clean one-line messages, a --help that exits 0,
every config key listed with its meaning, a run that says where it writes and what it rounds
before the slow part, a finished run left alone when run again, and one file mode for its files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from ampl_jax.config import defaults as config_default, keys as config_keys, validation as configuration
from tests import runs

QUICKSTART = "configs/quickstart.py"


def _main(args, tmp_path, cwd=runs.ROOT):
    """`ampl_jax.main` with a private (empty) Minari store: for runs refused before any data is read."""
    return subprocess.run([sys.executable, "-m", "ampl_jax.main", *args], cwd=cwd, env=runs.env(tmp_path / "minari"),
                          capture_output=True, text=True, timeout=300)


def _assert_clean(line: str) -> None:
    """No escaped quotes or newlines, every quote closed."""
    assert "\\" not in line, line
    assert line.count("'") % 2 == 0 and line.count('"') % 2 == 0, line
    assert line.count("(") == line.count(")"), line


# --- messages -------------------------------------------------------------------------------------


def test_typo_in_a_config_key_names_the_key_it_meant(tmp_path):
    proc = _main([f"--config={QUICKSTART}", "--config.train.total_step=100"], tmp_path)
    line = runs.assert_one_line_error(proc, "config.train.total_step is not a config key",
                                      "did you mean config.train.total_steps?", "--list_keys")
    _assert_clean(line)


def test_a_key_in_the_wrong_section_finds_its_section(tmp_path):
    proc = _main([f"--config={QUICKSTART}", "--config.total_steps=100"], tmp_path)
    _assert_clean(runs.assert_one_line_error(proc, "did you mean config.train.total_steps?"))


@pytest.mark.parametrize("override,needle", [
    ("--config.train.total_steps=abc", "config.train.total_steps=abc is not an integer"),
    ("--config.agent.gamma=x", "config.agent.gamma=x is not a number"),
    ("--config.dataset.download=maybe", "config.dataset.download=maybe is not True or False"),
    ("--config.agent.hidden_dims=(1,2", "config.agent.hidden_dims=(1,2 is not a tuple"),
])
def test_a_value_of_the_wrong_type_says_which_type(tmp_path, override, needle):
    proc = _main([f"--config={QUICKSTART}", override], tmp_path)
    line = runs.assert_one_line_error(proc, needle, QUICKSTART)
    if "hidden_dims" not in override:  # that one's value itself holds an unclosed parenthesis
        _assert_clean(line)


def test_an_unknown_flag_is_one_clean_line_pointing_to_help(tmp_path):
    proc = _main([f"--config={QUICKSTART}", "--workdirr=x"], tmp_path)
    _assert_clean(runs.assert_one_line_error(proc, "workdirr", "Did you mean: workdir", "--help"))


def test_a_missing_config_file_names_the_nearest_and_lists_configs(tmp_path):
    proc = _main(["--config=configs/quikstart.py"], tmp_path)
    line = runs.assert_one_line_error(proc, "config file configs/quikstart.py: not found",
                                      "did you mean configs/quickstart.py?")
    listed = line.split("configs/ holds ")[1].rstrip(")").split(", ")
    assert listed == configuration.config_files(str(runs.ROOT / "configs"))
    assert "quickstart.py" in listed and "__init__.py" not in listed
    _assert_clean(line)
    # from another folder, a missing configs/ points at the repository's
    proc = _main(["--config=configs/quikstart.py"], tmp_path, cwd=tmp_path)
    runs.assert_one_line_error(proc, f"did you mean {runs.ROOT / 'configs' / 'quickstart.py'}?")


def test_help_exits_0_and_shows_config_workdir_defaults_and_the_key_listing(tmp_path):
    for flag in ("--help", "-h", "--helpfull"):
        proc = _main([flag], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stderr == ""
        out = proc.stdout
        assert "--config=FILE" in out and "(default: none)" in out
        assert "--workdir=DIR" in out and "(default: runs/<dataset id, '/' -> '_'>_seed<seed>" in out
        assert "python -m ampl_jax.main --config=configs/quickstart.py --list_keys" in out
        for name in ("overwrite", "progress", "debug", "list_keys"):
            assert f"--[no]{name}" in out, name


def test_list_keys_prints_every_key_with_its_value_and_meaning(tmp_path):
    proc = _main([f"--config={QUICKSTART}", "--config.seed=7", "--list_keys"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, *lines = proc.stdout.strip().splitlines()
    assert header.startswith("# ") and QUICKSTART in header and "--config.KEY=VALUE" in header
    config = configuration.load_file(QUICKSTART)
    config.seed = 7
    expected = config_keys.flat_values(config)
    listed = {}
    for line in lines:
        left, _, meaning = line.partition("  # ")
        key, _, value = left.strip().partition("=")
        assert meaning.strip() and meaning != "(no description)", line
        listed[key] = value
    assert listed == {k: repr(v) for k, v in expected.items()}
    assert listed["seed"] == "7" and listed["train.total_steps"] == "20000"


def test_every_default_key_has_a_one_line_meaning_and_none_is_stale():
    keys = config_keys.flat_values(config_default.get_config())
    missing = [k for k in keys if not config_keys.meaning(k)]
    assert not missing, f"add a line to ampl_jax/config/keys.py DESCRIPTIONS for {missing}"
    stale = sorted(set(config_keys.DESCRIPTIONS) - set(keys))
    assert not stale, f"DESCRIPTIONS in ampl_jax/config/keys.py names keys that are gone: {stale}"
    assert all("\n" not in m for m in map(config_keys.meaning, keys))


# --- what a run says, and what it leaves -----------------------------------------------------------


def test_a_run_says_default_workdir_rounding_and_where_it_writes_before_the_data(tmp_path):
    """Without --workdir: the default folder is named; the rounding is announced; the absolute
    workdir is printed before the dataset is read (here it is missing, so the run stops there)."""
    proc = _main([f"--config={runs.ROOT / 'tests' / 'tiny_config.py'}", "--noprogress",
                  "--config.train.total_steps=10", "--config.train.eval_every=6",
                  "--config.dataset.id=ampl/none/missing-v0", "--config.dataset.create_if_missing=False"],
                 tmp_path, cwd=tmp_path)
    runs.assert_one_line_error(proc, "ampl/none/missing-v0")
    default = os.path.join("runs", "ampl_none_missing-v0_seed0")
    assert proc.stdout.splitlines() == [
        f"No --workdir given: using the default folder {default} (pass --workdir=DIR to choose another).",
        "Rounded up to whole rollout periods (rollout.period=4): train.total_steps 10 -> 12, train.eval_every 6 -> 8.",
        f"Writing the run to {tmp_path / default}",
    ]


def test_nothing_rounded_nothing_announced():
    from ampl_jax import train

    assert train.rounding_note(configuration.load_file(QUICKSTART)) is None
    config = configuration.load_file(QUICKSTART)
    config.checkpoint.every = 1000
    config.train.total_steps = 20_100
    assert train.rounding_note(config) == ("Rounded up to whole rollout periods (rollout.period=250): "
                                           "train.total_steps 20100 -> 20250.")


def _mtimes(workdir):
    return {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file() and p.name != ".lock"}


def test_a_complete_run_run_again_says_so_and_changes_nothing(tmp_path_factory, tmp_path):
    workdir = runs.copy_run(runs.session_dirs(tmp_path_factory)["ref"], tmp_path / "run")
    before, mtimes = runs.snapshot(workdir), _mtimes(workdir)
    proc = runs.main(runs.RUN_ARGS + [f"--workdir={workdir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""
    assert "Resuming" not in proc.stdout
    complete = [line for line in proc.stdout.splitlines() if line.startswith("Run already complete")]
    assert complete == [f"Run already complete: {workdir} reached step {runs.TOTAL_STEPS} "
                        f"(train.total_steps={runs.TOTAL_STEPS}); nothing was changed. To train longer, raise "
                        "--config.train.total_steps; to start again, add --overwrite."]
    assert f"after {runs.TOTAL_STEPS} steps" in proc.stdout  # the final score line, from its summary
    assert runs.snapshot(workdir) == before and _mtimes(workdir) == mtimes
    # a smaller total_steps than the run reached: complete as well
    args = [a if not a.startswith("--config.train.total_steps=") else "--config.train.total_steps=24"
            for a in runs.RUN_ARGS]
    proc = runs.main(args + [f"--workdir={workdir}"])
    assert proc.returncode == 0 and "Run already complete" in proc.stdout, proc.stderr[-3000:]
    assert runs.snapshot(workdir) == before


def test_a_runs_files_share_one_mode(tmp_path_factory):
    ref = runs.session_dirs(tmp_path_factory)["ref"]
    umask = os.umask(0)
    os.umask(umask)
    names = ("config.json", "summary.json", "metrics.csv", "model_fits.jsonl", "learning_curve.png")
    modes = {name: stat.S_IMODE(os.stat(ref / name).st_mode) for name in names}
    assert set(modes.values()) == {0o666 & ~umask}, {k: oct(v) for k, v in modes.items()}


def test_complete_needs_the_summary_to_reach_total_steps(tmp_path):
    """RunFiles.completed: the summary's steps must reach the target, and no newer checkpoint may
    show an extension under way; an unreadable summary is no completion."""
    import json

    from ampl_jax.rundir import RunFiles

    files = RunFiles(str(tmp_path), {}, None, 1)
    assert files.completed(40) is None
    (tmp_path / "summary.json").write_text(json.dumps({"steps": 40}))
    assert files.completed(40) == {"steps": 40} and files.completed(24) == {"steps": 40}
    assert files.completed(44) is None
    (tmp_path / "checkpoints" / "44").mkdir(parents=True)
    assert files.completed(40) is None
    (tmp_path / "summary.json").write_text("{not json")
    assert files.completed(24) is None


def test_a_key_without_a_description_line_gets_its_comment():
    source = '''
def get_config():
    c = ml_collections.ConfigDict()
    # --- section ------------------------------------------------------
    c.a = ml_collections.ConfigDict()
    c.a.own = 1  # its own comment
    # the block above
    # one key
    c.a.below = 2
    # a group of keys
    c.a.first = 3
    c.a.second = 4

    c.a.after_blank = 5
'''
    assert config_keys.comments_of(source) == {
        "a.own": "its own comment", "a.below": "the block above one key",
        "a.first": "a group of keys", "a.second": "a group of keys"}
