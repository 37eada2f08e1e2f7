"""Particle sets: reading RELION 5/4 files, derived arrays, generated names, consistency checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomo_refine_plugin.compute.conventions import euler_zyz_to_matrix
from tomo_refine_plugin.compute.errors import InputError
from tomo_refine_plugin.compute.io import (
    check_optics_match,
    check_particles_against_tomograms,
    fill_optics_from_tomograms,
    read_particle_set,
    read_star,
    read_tomogram_set,
    write_particle_set,
    write_star,
)

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


def test_read_golden_particles():
    p = read_particle_set(GOLDEN / "align" / "particles.star")
    assert p.general == {"rlnTomoSubTomosAre2DStacks": 0}
    assert len(p.particles) == 40 and p.tomo_names() == ["TS_01"]
    assert p.pixel_size_angst(1) == 6.0
    rows = p.for_tomogram("TS_01")
    assert list(rows.index) == list(range(40))
    c = p.centred_angst(rows, (320, 320, 128), 6.0)
    assert c.shape == (40, 3) and c.dtype == np.float64
    assert c[0, 0] == rows["rlnCenteredCoordinateXAngst"].iloc[0]
    assert np.array_equal(p.origins_angst(rows), np.zeros((40, 3)))
    m = p.particle_matrices(rows)
    r = rows.iloc[3]
    assert np.allclose(m[3], euler_zyz_to_matrix(r["rlnAngleRot"], r["rlnAngleTilt"], r["rlnAnglePsi"]))
    assert np.allclose(p.subtomo_matrices(rows), np.eye(3))


@pytest.mark.parametrize("rel", [
    "align/particles.star",
    "align/relion/align/particles.star",
    "subtomo/relion/subtomo2d/particles.star",
    "subtomo_motion_deform/truth/particles.star",
])
def test_write_read_identical(rel, tmp_path):
    p = read_particle_set(GOLDEN / rel)
    write_particle_set(p, tmp_path / "p.star")
    q = read_particle_set(tmp_path / "p.star")
    assert p.general == q.general
    pd.testing.assert_frame_equal(p.optics, q.optics, check_exact=True)
    pd.testing.assert_frame_equal(p.particles, q.particles, check_exact=True)
    # And the tables equal the original file's tables.
    raw = read_star(GOLDEN / rel)
    pd.testing.assert_frame_equal(raw["particles"], q.particles, check_exact=True)


def test_stack2d_visible_frames_kept(tmp_path):
    p = read_particle_set(GOLDEN / "subtomo" / "relion" / "subtomo2d" / "particles.star")
    assert p.general["rlnTomoSubTomosAre2DStacks"] == 1
    assert p.optics["rlnImageDimensionality"].iloc[0] == 2
    write_particle_set(p, tmp_path / "p.star")
    text = (tmp_path / "p.star").read_text()
    assert "[" + ",".join(["1"] * 31) + "]" in text


def relion4_particles(tmp_path) -> Path:
    df = pd.DataFrame({
        "rlnTomoName": pd.Series(["TS_01", "TS_02", "TS_01", "TS_01"], dtype=str),
        "rlnCoordinateX": [100.0, 160.0, 0.0, 320.0],
        "rlnCoordinateY": [160.0, 160.0, 0.0, 320.0],
        "rlnCoordinateZ": [64.0, 64.0, 0.0, 128.0],
        "rlnAngleRot": [0.0, 10.0, 20.0, 30.0],
    })
    write_star({"particles": df}, tmp_path / "picked.star")
    return tmp_path / "picked.star"


def test_relion4_coordinates_names_and_generated_optics(tmp_path):
    with pytest.warns(UserWarning, match="one optics group per tomogram"):
        p = read_particle_set(relion4_particles(tmp_path))
    # Generated names: <tomo>/<k>, k 1-based per tomogram in file order.
    assert list(p.particles["rlnTomoParticleName"]) == ["TS_01/1", "TS_02/1", "TS_01/2", "TS_01/3"]
    assert list(p.particles.columns[:2]) == ["rlnTomoName", "rlnTomoParticleName"]
    assert list(p.optics["rlnOpticsGroupName"]) == ["TS_01", "TS_02"]
    assert list(p.particles["rlnOpticsGroup"]) == [1, 2, 1, 1]
    rows = p.for_tomogram("TS_01")
    assert list(rows.index) == [0, 2, 3]
    # Decentred px -> centred Å: (p - size/2) * pix; size (320,320,128), pix 6 Å.
    c = p.centred_angst(rows, (320, 320, 128), 6.0)
    assert np.array_equal(c, [[-360.0, 0.0, 0.0], [-960.0, -960.0, -384.0], [960.0, 960.0, 384.0]])
    with pytest.raises(InputError, match="rlnTomoTiltSeriesPixelSize"):
        p.pixel_size_angst(1)


def test_fill_optics_from_tomograms(tmp_path):
    with pytest.warns(UserWarning):
        p = read_particle_set(relion4_particles(tmp_path))
    p = p.with_particles(p.particles.loc[p.particles["rlnTomoName"] == "TS_01"].reset_index(drop=True))
    t = read_tomogram_set(GOLDEN / "align" / "tomograms.star")
    t.global_table.loc[0, "rlnTomoName"] = "TS_01"
    p = fill_optics_from_tomograms(p, t)
    assert p.pixel_size_angst(1) == 6.0
    check_optics_match(p, t)


def test_missing_particles_table(tmp_path):
    write_star({"optics": pd.DataFrame({"rlnOpticsGroup": [1]})}, tmp_path / "p.star")
    with pytest.raises(InputError) as e:
        read_particle_set(tmp_path / "p.star")
    assert "data_particles" in str(e.value) and "p.star" in str(e.value)


def test_missing_position_and_name_columns(tmp_path):
    write_star({"particles": pd.DataFrame({"rlnTomoName": ["a"], "rlnAngleRot": [1.0]})}, tmp_path / "p.star")
    with pytest.raises(InputError, match="rlnCenteredCoordinate"):
        read_particle_set(tmp_path / "p.star")
    write_star({"particles": pd.DataFrame({"rlnCoordinateX": [1.0]})}, tmp_path / "q.star")
    with pytest.raises(InputError, match="rlnTomoName"):
        read_particle_set(tmp_path / "q.star")


def test_particle_tomo_not_in_tomogram_set(tmp_path):
    blocks = read_star(GOLDEN / "align" / "particles.star")
    blocks["particles"].loc[5, "rlnTomoName"] = "TS_99"
    write_star(blocks, tmp_path / "p.star")
    p = read_particle_set(tmp_path / "p.star")
    t = read_tomogram_set(GOLDEN / "align" / "tomograms.star")
    with pytest.raises(InputError) as e:
        check_particles_against_tomograms(p, t)
    assert "TS_99" in str(e.value) and "p.star" in str(e.value) and "rlnTomoName" in str(e.value)


def test_pixel_size_mismatch(tmp_path):
    blocks = read_star(GOLDEN / "align" / "particles.star")
    t = read_tomogram_set(GOLDEN / "align" / "tomograms.star")
    blocks["optics"].loc[0, "rlnTomoTiltSeriesPixelSize"] = 6.0 + 5e-4  # within RELION's 1e-3
    write_star(blocks, tmp_path / "ok.star")
    check_optics_match(read_particle_set(tmp_path / "ok.star"), t)
    blocks["optics"].loc[0, "rlnTomoTiltSeriesPixelSize"] = 6.002
    write_star(blocks, tmp_path / "bad.star")
    with pytest.raises(InputError) as e:
        check_optics_match(read_particle_set(tmp_path / "bad.star"), t)
    assert "rlnTomoTiltSeriesPixelSize" in str(e.value) and "bad.star" in str(e.value)


def test_duplicate_particle_names(tmp_path):
    blocks = read_star(GOLDEN / "align" / "particles.star")
    blocks["particles"].loc[1, "rlnTomoParticleName"] = blocks["particles"].loc[0, "rlnTomoParticleName"]
    write_star(blocks, tmp_path / "p.star")
    with pytest.raises(InputError, match="duplicate"):
        read_particle_set(tmp_path / "p.star")


def test_subtomogram_orientations_compose(tmp_path):
    blocks = read_star(GOLDEN / "align" / "particles.star")
    df = blocks["particles"]
    df["rlnTomoSubtomogramRot"] = 10.0
    df["rlnTomoSubtomogramTilt"] = 20.0
    df["rlnTomoSubtomogramPsi"] = 30.0
    write_star(blocks, tmp_path / "p.star")
    p = read_particle_set(tmp_path / "p.star")
    a_sub = euler_zyz_to_matrix(10.0, 20.0, 30.0)
    r = df.iloc[0]
    a_part = euler_zyz_to_matrix(r["rlnAngleRot"], r["rlnAngleTilt"], r["rlnAnglePsi"])
    assert np.allclose(p.particle_matrices()[0], a_sub @ a_part)


def test_zernike_vectors(tmp_path):
    blocks = read_star(GOLDEN / "align" / "particles.star")
    blocks["optics"]["rlnEvenZernike"] = pd.Series(["[0.1,-0.2,0.0,0.0,0.3,0.0]"], dtype=str)
    write_star(blocks, tmp_path / "p.star")
    p = read_particle_set(tmp_path / "p.star")
    even, odd = p.zernike(1)
    assert np.array_equal(even, [0.1, -0.2, 0.0, 0.0, 0.3, 0.0]) and odd.shape == (0,)


def test_empty_particle_table_reads(tmp_path):
    blocks = read_star(GOLDEN / "align" / "particles.star")
    blocks["particles"] = blocks["particles"].iloc[:0]
    write_star(blocks, tmp_path / "p.star")
    p = read_particle_set(tmp_path / "p.star")
    assert len(p.particles) == 0 and p.tomo_names() == []
    assert p.centred_angst(None, (320, 320, 128), 6.0).shape == (0, 3)
