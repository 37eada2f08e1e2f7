"""Tomogram sets: RELION 5 two-level and RELION 4 all-in-one reading, geometry/optics views, writing."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomo_refine_plugin.compute.conventions import relion_angles_to_projection
from tomo_refine_plugin.compute.errors import InputError
from tomo_refine_plugin.compute.io import (
    format_vector,
    load_tilt_series,
    read_mrc,
    read_star,
    read_tomogram_set,
    split_image_name,
    write_mrc,
    write_star,
    write_tomogram_set,
)

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


def small_tomogram_set(tmp_path, n_tilts=3, size=(40, 32), with_columns=None) -> Path:
    """A two-level set with a real (tiny) stack: 'TS_A', images of constant value f+1 in section f."""
    w, h = size
    stack = np.stack([np.full((h, w), f + 1.0, np.float32) for f in range(n_tilts)])
    write_mrc(tmp_path / "ts" / "TS_A.mrcs", stack, 2.0)
    tilt = pd.DataFrame({
        "rlnMicrographName": pd.Series([f"{f + 1}@ts/TS_A.mrcs" for f in range(n_tilts)], dtype=str),
        "rlnTomoYTilt": np.linspace(-30, 30, n_tilts),
        "rlnTomoZRot": np.full(n_tilts, 85.0),
        "rlnTomoXShiftAngst": np.arange(n_tilts, dtype=float),
        "rlnTomoYShiftAngst": -np.arange(n_tilts, dtype=float),
        "rlnDefocusU": np.full(n_tilts, 20000.0),
        "rlnDefocusV": np.full(n_tilts, 19000.0),
        "rlnDefocusAngle": np.full(n_tilts, 30.0),
        "rlnMicrographPreExposure": 3.0 * np.arange(n_tilts),
        "rlnMyUnknownColumn": np.arange(n_tilts) * 7,
    })
    if with_columns:
        for k, v in with_columns.items():
            tilt[k] = v
    write_star({"TS_A": tilt}, tmp_path / "ts" / "TS_A.star")
    glob = pd.DataFrame({
        "rlnTomoName": pd.Series(["TS_A"], dtype=str),
        "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
        "rlnTomoHand": [-1.0], "rlnTomoTiltSeriesPixelSize": [2.0],
        "rlnTomoTiltSeriesStarFile": pd.Series(["ts/TS_A.star"], dtype=str),
        "rlnTomoSizeX": [40], "rlnTomoSizeY": [32], "rlnTomoSizeZ": [16],
    })
    write_star({"global": glob}, tmp_path / "tomograms.star")
    return tmp_path / "tomograms.star"


def test_read_golden_two_level_from_elsewhere():
    # Paths are relative to the dataset folder; the test runs from the repository: fallback to the STAR folder.
    t = read_tomogram_set(GOLDEN / "align" / "tomograms.star")
    assert t.names() == ["TS_01"]
    table = t.tilt_tables["TS_01"]
    assert len(table) == 31 and table.columns[0] == "rlnMicrographName"
    assert t.row("TS_01")["rlnTomoSizeZ"] == 128
    assert t.tomo_size_px("TS_01") == (320, 320, 128)


def test_relion_output_set_resolves_project_relative_paths():
    # relion/align/tomograms.star names 'relion/align/tilt_series/TS_01.star', relative to the project folder.
    t = read_tomogram_set(GOLDEN / "align" / "relion" / "align" / "tomograms.star")
    assert t.tilt_star_paths["TS_01"].samefile(GOLDEN / "align" / "relion" / "align" / "tilt_series" / "TS_01.star")


def test_geometry_and_optics_from_golden(golden_dir):
    t = read_tomogram_set(golden_dir / "align" / "tomograms.star")
    g = t.geometry("TS_01")
    table = t.tilt_tables["TS_01"]
    assert g.image_size_px == (320, 320) and g.tomo_size_px == (320, 320, 128)
    assert g.pixel_size_angst == 6.0 and g.hand == -1.0 and g.defocus_slope == 1.0
    assert np.array_equal(g.y_tilt_deg, table["rlnTomoYTilt"].to_numpy())
    assert np.array_equal(g.shift_angst[:, 1], table["rlnTomoYShiftAngst"].to_numpy())
    o = t.optics("TS_01")
    assert (o.voltage_kv, o.cs_mm, o.amplitude_contrast) == (300.0, 2.7, 0.07)
    assert o.pre_exposure_e_per_angst2[0] == 90.0 and o.pre_exposure_e_per_angst2[15] == 0.0
    assert np.all(o.ctf_bfactor_angst2 == 0) and np.all(o.phase_shift_deg == 0)  # RELION defaults
    assert o.bfactor_per_dose_angst2 == 0.0
    stack = load_tilt_series(t, "TS_01")
    raw, _ = read_mrc(golden_dir / "align" / "tilt_series" / "TS_01.mrcs")
    assert stack.dtype == np.float32 and stack.shape == (31, 320, 320)
    assert np.array_equal(stack, raw)


def test_one_based_sections_and_image_order(tmp_path):
    assert split_image_name("3@a/b.mrcs") == (2, "a/b.mrcs")
    assert split_image_name("a.mrc") == (None, "a.mrc")
    with pytest.raises(InputError):
        split_image_name("0@a.mrcs")
    path = small_tomogram_set(tmp_path)
    # Reverse the frame order in the table: image f must then be section n-1-f.
    t = read_tomogram_set(path)
    table = t.tilt_tables["TS_A"]
    table["rlnMicrographName"] = pd.Series(list(table["rlnMicrographName"])[::-1], dtype=str)
    stack = load_tilt_series(t, "TS_A")
    assert stack.shape == (3, 32, 40)
    assert [float(s[0, 0]) for s in stack] == [3.0, 2.0, 1.0]
    assert t.image_size_px("TS_A") == (40, 32)


def test_defaults_for_optional_columns(tmp_path):
    t = read_tomogram_set(small_tomogram_set(tmp_path))
    g = t.geometry("TS_A")
    assert np.all(g.x_tilt_deg == 0.0)  # rlnTomoXTilt absent -> 0
    assert g.defocus_slope == 1.0
    o = t.optics("TS_A")
    assert np.all(o.ctf_scale == 1.0) and np.all(o.ctf_bfactor_angst2 == 0.0) and np.all(o.phase_shift_deg == 0.0)


@pytest.mark.parametrize("column", ["rlnTomoYTilt", "rlnMicrographPreExposure", "rlnDefocusU"])
def test_missing_required_tilt_column(tmp_path, column):
    path = small_tomogram_set(tmp_path)
    tilt = read_star(tmp_path / "ts" / "TS_A.star")["TS_A"].drop(columns=[column])
    write_star({"TS_A": tilt}, tmp_path / "ts" / "TS_A.star")
    t = read_tomogram_set(path)
    with pytest.raises(InputError) as e:
        t.geometry("TS_A") if column == "rlnTomoYTilt" else t.optics("TS_A")
    assert column in str(e.value) and "TS_A.star" in str(e.value) and "data_TS_A" in str(e.value)


def test_missing_tomo_size_and_hand(tmp_path):
    path = small_tomogram_set(tmp_path)
    g = read_star(path)["global"].drop(columns=["rlnTomoSizeZ", "rlnTomoHand"])
    write_star({"global": g}, path)
    t = read_tomogram_set(path)
    with pytest.raises(InputError, match="rlnTomoSizeZ"):
        t.geometry("TS_A")


def test_missing_files_and_tables(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_tomogram_set(tmp_path / "none.star")
    path = small_tomogram_set(tmp_path)
    (tmp_path / "ts" / "TS_A.star").unlink()
    with pytest.raises(InputError) as e:
        read_tomogram_set(path)
    assert "rlnTomoTiltSeriesStarFile" in str(e.value) and "ts/TS_A.star" in str(e.value)
    write_star({"other": pd.DataFrame({"rlnTomoName": ["x"]})}, tmp_path / "bad.star")
    with pytest.raises(InputError, match="data_global"):
        read_tomogram_set(tmp_path / "bad.star")
    write_star({"global": pd.DataFrame({"rlnVoltage": [300.0]})}, tmp_path / "bad2.star")
    with pytest.raises(InputError, match="rlnTomoName"):
        read_tomogram_set(tmp_path / "bad2.star")


def test_wrong_table_name_in_tilt_star(tmp_path):
    path = small_tomogram_set(tmp_path)
    tilt = read_star(tmp_path / "ts" / "TS_A.star")["TS_A"]
    write_star({"TS_B": tilt}, tmp_path / "ts" / "TS_A.star")
    with pytest.raises(InputError, match="data_TS_A"):
        read_tomogram_set(path)


def test_missing_image_is_reported(tmp_path):
    path = small_tomogram_set(tmp_path)
    (tmp_path / "ts" / "TS_A.mrcs").unlink()
    t = read_tomogram_set(path)
    with pytest.raises(InputError, match="rlnMicrographName"):
        load_tilt_series(t, "TS_A")


def test_write_read_round_trip_exact(tmp_path, monkeypatch):
    monkeypatch.chdir(GOLDEN / "align")
    t = read_tomogram_set("tomograms.star")
    out = tmp_path / "out" / "tomograms.star"
    write_tomogram_set(t, out)
    back = read_tomogram_set(out)
    g0, g1 = t.global_table, back.global_table
    assert list(g0.columns) == list(g1.columns)
    pd.testing.assert_frame_equal(g0.drop(columns="rlnTomoTiltSeriesStarFile"),
                                  g1.drop(columns="rlnTomoTiltSeriesStarFile"), check_exact=True)
    # Run from the project folder: the per-tilt STAR path is written relative to it only when inside it.
    assert Path(g1["rlnTomoTiltSeriesStarFile"].iloc[0]) == out.parent / "tilt_series" / "TS_01.star"
    pd.testing.assert_frame_equal(t.tilt_tables["TS_01"], back.tilt_tables["TS_01"], check_exact=True)


def test_write_relative_to_cwd_like_relion(tmp_path, monkeypatch):
    path = small_tomogram_set(tmp_path)
    monkeypatch.chdir(tmp_path)
    t = read_tomogram_set("tomograms.star")
    write_tomogram_set(t, "job1/tomograms.star")
    g = read_star(tmp_path / "job1" / "tomograms.star")["global"]
    assert g["rlnTomoTiltSeriesStarFile"].iloc[0] == "job1/tilt_series/TS_A.star"
    tilt = read_star(tmp_path / "job1" / "tilt_series" / "TS_A.star")["TS_A"]
    assert tilt["rlnMicrographName"].iloc[0] == "1@ts/TS_A.mrcs"  # image paths untouched
    assert list(tilt["rlnMyUnknownColumn"]) == [0, 7, 14]
    assert path.exists()


def test_image_paths_rebased_when_read_from_elsewhere(tmp_path, monkeypatch):
    small_tomogram_set(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)
    t = read_tomogram_set("proj/tomograms.star")  # images resolve only relative to proj/
    write_tomogram_set(t, "out/tomograms.star")
    tilt = read_star(tmp_path / "out" / "tilt_series" / "TS_A.star")["TS_A"]
    assert tilt["rlnMicrographName"].iloc[1] == "2@proj/ts/TS_A.mrcs"
    back = read_tomogram_set("out/tomograms.star")
    assert load_tilt_series(back, "TS_A")[1, 0, 0] == 2.0


def test_with_geometry_replaces_only_the_five_columns(tmp_path):
    t = read_tomogram_set(small_tomogram_set(tmp_path))
    g = t.geometry("TS_A")
    from dataclasses import replace

    g2 = replace(g, x_tilt_deg=g.x_tilt_deg + 0.5, shift_angst=g.shift_angst * 2)
    t2 = t.with_geometry(g2)
    a, b = t.tilt_tables["TS_A"], t2.tilt_tables["TS_A"]
    assert "rlnTomoXTilt" not in a.columns  # the original is untouched
    assert np.array_equal(b["rlnTomoXTilt"].to_numpy(), g.x_tilt_deg + 0.5)
    assert np.array_equal(b["rlnTomoYShiftAngst"].to_numpy(), 2 * a["rlnTomoYShiftAngst"].to_numpy())
    others = [c for c in a.columns if c not in ("rlnTomoXShiftAngst", "rlnTomoYShiftAngst")]
    pd.testing.assert_frame_equal(a[others], b[others])
    g3 = t2.geometry("TS_A")
    assert np.array_equal(g3.x_tilt_deg, g2.x_tilt_deg) and np.array_equal(g3.shift_angst, g2.shift_angst)


def test_projection_matrices_written_and_read_back(tmp_path, monkeypatch):
    path = small_tomogram_set(tmp_path)
    monkeypatch.chdir(tmp_path)
    t = read_tomogram_set(path)
    write_tomogram_set(t, "p/tomograms.star", write_projection_matrices=True)
    tilt = read_star(tmp_path / "p" / "tilt_series" / "TS_A.star")["TS_A"]
    assert all(c in tilt.columns for c in ("rlnTomoProjX", "rlnTomoProjY", "rlnTomoProjZ", "rlnTomoProjW"))
    assert tilt["rlnTomoProjW"].iloc[0] == "[0.0,0.0,0.0,1.0]"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consistent matrices and angles: no warning
        g = read_tomogram_set("p/tomograms.star").geometry("TS_A")
    g0 = t.geometry("TS_A")
    assert np.allclose(g.y_tilt_deg, g0.y_tilt_deg, atol=1e-10)
    assert np.allclose(g.shift_angst, g0.shift_angst, atol=1e-9)


def legacy_set(tmp_path, projections, image_size=(40, 32)) -> Path:
    """A RELION 4 all-in-one tomograms.star with rlnTomoProj* rows and a stack 'stack.mrc:mrc'."""
    n = projections.shape[0]
    w, h = image_size
    write_mrc(tmp_path / "stack.mrc", np.zeros((n, h, w), np.float32), 2.0)
    glob = pd.DataFrame({
        "rlnTomoName": pd.Series(["TS_L"], dtype=str),
        "rlnTomoTiltSeriesName": pd.Series(["stack.mrc:mrc"], dtype=str),
        "rlnTomoFrameCount": [n],
        "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
        "rlnTomoHand": [1.0], "rlnTomoTiltSeriesPixelSize": [2.0],
        "rlnTomoSizeX": [40], "rlnTomoSizeY": [32], "rlnTomoSizeZ": [16],
    })
    tilt = pd.DataFrame({
        "rlnTomoProjX": pd.Series([format_vector(p[0]) for p in projections], dtype=str),
        "rlnTomoProjY": pd.Series([format_vector(p[1]) for p in projections], dtype=str),
        "rlnTomoProjZ": pd.Series([format_vector(p[2]) for p in projections], dtype=str),
        "rlnTomoProjW": pd.Series([format_vector(p[3]) for p in projections], dtype=str),
        "rlnDefocusU": np.full(n, 1e4), "rlnDefocusV": np.full(n, 1e4), "rlnDefocusAngle": np.zeros(n),
        "rlnMicrographPreExposure": np.arange(n, dtype=float),
    })
    write_star({"global": glob, "TS_L": tilt}, tmp_path / "tomograms.star")
    return tmp_path / "tomograms.star"


def test_legacy_all_in_one_hand_derived(tmp_path):
    # Identity rotation; translation column = c_img + shift/pix - c_tomo with c_img=(20,16), c_tomo=(20,16,8):
    # a ProjX row [1,0,0,3] is a shift of 3 px = 6 Å, a ProjY row [0,1,0,-1.5] is -3 Å.
    p = np.eye(4)[None].repeat(2, 0)
    p[:, 0, 3] = 3.0
    p[:, 1, 3] = -1.5
    p[:, 2, 3] = -8.0  # the depth row is translated too; it does not enter the angles
    path = legacy_set(tmp_path, p)
    with pytest.warns(UserWarning, match="RELION 4"):
        t = read_tomogram_set(path)
    with pytest.warns(UserWarning, match="rlnTomoProj"):
        g = t.geometry("TS_L")
    assert np.allclose(g.shift_angst, [[6.0, -3.0], [6.0, -3.0]], atol=1e-12)
    assert np.allclose([g.x_tilt_deg, g.y_tilt_deg, g.z_rot_deg], 0.0, atol=1e-12)
    assert g.image_size_px == (40, 32)
    assert load_tilt_series(t, "TS_L").shape == (2, 32, 40)


def test_legacy_conversion_recovers_angles(tmp_path, monkeypatch):
    xt, yt, zr = np.array([0.3, -0.2, 0.1]), np.array([-40.0, 0.0, 35.0]), np.array([84.0, 85.5, 86.0])
    sx, sy = np.array([1.0, -2.0, 3.5]), np.array([0.0, 4.0, -6.0])
    proj = relion_angles_to_projection(xt, yt, zr, sx, sy, 2.0, (40, 32, 16), (40, 32))
    path = legacy_set(tmp_path, proj)
    with pytest.warns(UserWarning):
        t = read_tomogram_set(path)
        g = t.geometry("TS_L")
    assert np.allclose(g.x_tilt_deg, xt, atol=1e-9) and np.allclose(g.y_tilt_deg, yt, atol=1e-9)
    assert np.allclose(g.z_rot_deg, zr, atol=1e-9)
    assert np.allclose(g.shift_angst, np.stack([sx, sy], -1), atol=1e-9)
    # Writing converts it to the two-level layout; the geometry survives.
    monkeypatch.chdir(tmp_path)
    t2 = t.with_geometry(g)
    write_tomogram_set(t2, "r5/tomograms.star")
    back = read_tomogram_set("r5/tomograms.star")
    assert "rlnTomoTiltSeriesStarFile" in back.global_table.columns
    assert np.allclose(back.tilt_tables["TS_L"]["rlnTomoYTilt"].to_numpy(), yt, atol=1e-9)


def test_subset_and_unknown_tomogram(tmp_path):
    t = read_tomogram_set(small_tomogram_set(tmp_path))
    assert t.subset(["TS_A"]).names() == ["TS_A"]
    with pytest.raises(InputError, match="TS_Z"):
        t.row("TS_Z")


def test_deformation_and_fractional_dose():
    t = read_tomogram_set(GOLDEN / "subtomo_motion_deform" / "truth" / "tomograms.star")
    d = t.deformation("TS_01")
    assert d["type"] == "spline" and d["grid_size"] == (3, 3)
    assert d["coefficients"].shape == (31, 72) and d["coefficients"][0, 0] == 1.34429267496
    # Dose-symmetric, 3 e/Å² per tilt: the first two chronological tilts differ by 3.
    assert t.fractional_dose_e_per_angst2("TS_01") == 3.0
    assert read_tomogram_set(GOLDEN / "align" / "tomograms.star").deformation("TS_01") is None


def test_legacy_matrices_dropped_on_write_like_relion(tmp_path, monkeypatch):
    p = np.eye(4)[None].repeat(2, 0)
    p[:, 0, 3] = 3.0
    with pytest.warns(UserWarning):
        t = read_tomogram_set(legacy_set(tmp_path, p))
    monkeypatch.chdir(tmp_path)
    write_tomogram_set(t, "r5/tomograms.star")
    tilt = read_star(tmp_path / "r5" / "tilt_series" / "TS_L.star")["TS_L"]
    assert "rlnTomoProjX" not in tilt.columns
    assert np.allclose(tilt["rlnTomoXShiftAngst"].to_numpy(), 6.0, atol=1e-12)
    g = read_star(tmp_path / "r5" / "tomograms.star")["global"]
    assert g["rlnTomoTiltSeriesName"].iloc[0] == "stack.mrc:mrc"
    assert load_tilt_series(read_tomogram_set("r5/tomograms.star"), "TS_L").shape == (2, 32, 40)


def test_write_relative_to_dataset_folder(tmp_path, monkeypatch):
    small_tomogram_set(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)
    t = read_tomogram_set("proj/tomograms.star")
    write_tomogram_set(t, tmp_path / "ds" / "tomograms.star", relative_to=tmp_path / "ds")
    g = read_star(tmp_path / "ds" / "tomograms.star")["global"]
    assert g["rlnTomoTiltSeriesStarFile"].iloc[0] == "tilt_series/TS_A.star"
    tilt = read_star(tmp_path / "ds" / "tilt_series" / "TS_A.star")["TS_A"]
    # The images lie outside the folder the paths are relative to: written absolute, as RELION does.
    assert tilt["rlnMicrographName"].iloc[0] == f"1@{(tmp_path / 'proj' / 'ts' / 'TS_A.mrcs').resolve()}"
    monkeypatch.chdir(tmp_path / "ds")
    assert load_tilt_series(read_tomogram_set("tomograms.star"), "TS_A")[2, 0, 0] == 3.0
