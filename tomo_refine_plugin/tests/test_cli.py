"""The command line: every subcommand answers --help, the module entry point works, and the demo runs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tomo_refine_plugin.cli import SUBCOMMANDS, build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_documented_subcommand_is_installed():
    # A subcommand module that fails to import would silently vanish from the parser; make that loud.
    missing = set(SUBCOMMANDS) - set(_subcommands())
    assert not missing - {"show"}, f"subcommands without a module: {missing}"


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("simulate", "align", "subtomo", "reconstruct", "demo"):
        assert name in out


@pytest.mark.parametrize("name", _subcommands())
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: tomo-refine " + name in capsys.readouterr().out


def test_console_script_and_module_entry_point():
    script = Path(sys.executable).parent / "tomo-refine"
    script = str(script) if script.exists() else shutil.which("tomo-refine")
    assert script, "the tomo-refine console script is not installed (pip install -e .)"
    for cmd in ([script, "--help"], [sys.executable, "-m", "tomo_refine_plugin", "--help"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "simulate" in done.stdout


def test_no_subcommand_prints_help_and_fails(capsys):
    assert main([]) == 1
    assert "usage: tomo-refine" in capsys.readouterr().out


def test_simulate_cli_writes_dataset_and_rejects_bad_options(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--n_particles", "2", "--n_tilts", "3", "--image_size_px", "64", "64",
                 "--box_px", "16", "--tomo_depth_px", "16", "--snr", "inf", "--apply_ctf", "false",
                 "--angle_err_deg", "0.1", "0.2", "0.3"]) == 0
    assert (out / "tilt_series" / "TS_01.mrcs").is_file() and (out / "truth" / "errors.json").is_file()
    import json

    options = json.loads((out / "truth" / "errors.json").read_text())["options"]
    assert options["apply_ctf"] is False and options["angle_err_deg"] == [0.1, 0.2, 0.3]
    assert options["snr"] == float("inf")
    # An odd box is bad input: exit code 2 and a message naming the option, no traceback.
    assert main(["simulate", "--out", str(tmp_path / "bad"), "--box_px", "15"]) == 2
    assert "box_px" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "tomograms.star").exists()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    # The README's first command: it must run from a fresh checkout and show the refinement working.
    assert main(["demo", "--out", str(tmp_path / "demo"), "--n_particles", "20", "--j", "2"]) == 0
    out = capsys.readouterr().out
    before = next(line for line in out.splitlines() if line.startswith("before"))
    after = next(line for line in out.splitlines() if line.startswith("after"))
    rms_before = float(before.split("RMS")[1].split()[0])
    rms_after = float(after.split("RMS")[1].split()[0])
    assert rms_before > 2.0 and rms_after < 0.5
    assert "half-map FSC 0.143" in after


REPO = Path(__file__).resolve().parents[2]


def test_readme_opens_with_the_two_fresh_machine_commands():
    text = (REPO / "README.rst").read_text()
    blocks = [b.split("\n\n", 1)[1].strip().splitlines()[0].strip()
              for b in text.split(".. code-block:: bash")[1:3]]
    assert blocks == ["pip install -e . && tomo-refine demo", "pip install -e '.[test]' && python -m pytest"]
    # .ci/run runs exactly the README's test command.
    assert "\npython -m pytest\n" in (REPO / ".ci" / "run").read_text()


def test_readme_deviations_match_docs():
    # README.rst (the PyPI page) carries a copy of docs/DEVIATIONS.md; .ci/sync_readme.py refreshes it.
    done = subprocess.run([sys.executable, str(REPO / ".ci" / "sync_readme.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
