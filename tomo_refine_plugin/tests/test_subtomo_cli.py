"""tomo-refine subtomo / reconstruct / show through the command line."""
from __future__ import annotations

import numpy as np
import pytest

from tomo_refine_plugin.cli import build_parser, main
from tomo_refine_plugin.cli.subtomo import options_from_args
from tomo_refine_plugin.compute.io.particles import read_particle_set, write_particle_set
from tomo_refine_plugin.compute.plots import central_slices


def test_every_relion_flag_is_accepted():
    flags = ("--i a --p b --t c --mot d --b 48 --crop 32 --bin 2 --stack2d --float16 --multi --no_comb --ctf --div "
             "--nrm --SNR 3 --min_frames 5 --max_dose 50 --cone_weight --cone_angle 12 --cone_sig0 3 "
             "--cutoff_fract 0.02 --no_circle_crop --circle_precrop --grid_precorr --taper 4 --env 2 --whiten "
             "--no_center --no_ic --no_ctf --apply_orientations --dont_apply_offsets --real_subtomo --diag "
             "--only_do_unfinished --j 3 --o out/ --only_tomos TS_01,TS_02 --merge_only --theme classic")
    opts = options_from_args(build_parser().parse_args(["subtomo"] + flags.split()))
    assert opts.bin == 2.0 and opts.crop == 32 and opts.only_tomos == ("TS_01", "TS_02") and opts.cone_sig0 == 3.0
    assert opts.whiten and opts.real_subtomo and opts.env == 2.0 and opts.j == 3


def test_cli_refuses_unsupported_flag_with_exit_2(golden_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(golden_dir / "subtomo")
    rc = main(["subtomo", "--i", "optimisation_set.star", "--b", "32", "--o", str(tmp_path / "x"),
                "--real_subtomo"])
    assert rc == 2
    assert "not supported by tomo-refine" in capsys.readouterr().err


def test_subtomo_then_show_writes_png(golden_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(golden_dir / "subtomo")
    pset = read_particle_set("particles.star")
    write_particle_set(pset.with_particles(pset.particles.iloc[:2].copy()), tmp_path / "p.star")
    out = tmp_path / "o"
    assert main(["subtomo", "--p", str(tmp_path / "p.star"), "--t", "tomograms.star", "--b", "32", "--crop", "24",
                 "--j", "1", "--o", str(out)]) == 0
    note = (out / "note.txt").read_text()
    assert note.startswith("Command:\n\ntomo-refine subtomo --o") and "--crop 24" in note
    png = tmp_path / "fig.png"
    assert main(["show", "subtomo", "--i", str(out / "particles.star"), "--n", "2", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    out2 = tmp_path / "o2"
    assert main(["subtomo", "--p", str(tmp_path / "p.star"), "--t", "tomograms.star", "--b", "32", "--crop", "24",
                 "--j", "1", "--stack2d", "--o", str(out2)]) == 0
    assert main(["show", "subtomo", "--i", str(out2 / "particles.star"), "--out", str(tmp_path / "f2.png")]) == 0


def test_central_slices_shapes_and_positions():
    v = np.arange(4 * 6 * 8).reshape(4, 6, 8)
    xy, xz, yz = central_slices(v)
    assert xy.shape == (6, 8) and xz.shape == (4, 8) and yz.shape == (4, 6)
    assert xy[0, 0] == v[2, 0, 0] and xz[0, 0] == v[0, 3, 0] and yz[0, 0] == v[0, 0, 4]


def test_reconstruct_cli(golden_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(golden_dir / "subtomo")
    rc = main(["reconstruct", "--i", "optimisation_set.star", "--b", "48", "--crop", "32", "--j", "1",
               "--o", str(tmp_path / "r")])
    assert rc == 0
    import mrcfile

    with mrcfile.open(tmp_path / "r" / "merged.mrc") as m:
        assert m.data.shape == (32, 32, 32) and float(m.voxel_size.x) == pytest.approx(6.0)
    assert (tmp_path / "r" / "fsc.star").exists()
