"""STAR round trips on real RELION 5.0.1 files: exact values, every column, row order, vector cells."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomo_refine_plugin.compute.errors import InputError
from tomo_refine_plugin.compute.io import format_vector, parse_vector, read_star, require_columns, write_star

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
STAR_FILES = sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*.star"))


def assert_blocks_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        if isinstance(a[name], dict):
            assert a[name] == b[name], name
            assert [type(v) for v in a[name].values()] == [type(v) for v in b[name].values()]
        else:
            pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)


def test_golden_copies_are_present_and_small():
    assert len(STAR_FILES) >= 15
    assert sum(p.stat().st_size for p in GOLDEN.rglob("*")) < 1_000_000


@pytest.mark.parametrize("rel", STAR_FILES)
def test_round_trip_is_exact(rel, tmp_path):
    original = read_star(GOLDEN / rel)
    write_star(original, tmp_path / "copy.star")
    again = read_star(tmp_path / "copy.star")
    assert_blocks_equal(original, again)
    # A second generation is byte-identical: the writer is deterministic.
    write_star(again, tmp_path / "copy2.star")
    assert (tmp_path / "copy.star").read_text() == (tmp_path / "copy2.star").read_text()


def test_written_file_is_relion_style(tmp_path):
    blocks = read_star(GOLDEN / "align" / "particles.star")
    write_star(blocks, tmp_path / "p.star")
    text = (tmp_path / "p.star").read_text()
    assert text.count("# version 50001") == 3
    assert "data_general" in text and "data_optics" in text and "data_particles" in text
    assert "starfile" not in text
    # No temporary file is left behind by the atomic write.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.star"]


def test_dtypes_names_are_strings_numbers_are_numbers():
    p = read_star(GOLDEN / "subtomo" / "relion" / "subtomo2d" / "particles.star")["particles"]
    for col in ("rlnTomoName", "rlnTomoParticleName", "rlnImageName", "rlnTomoVisibleFrames"):
        assert pd.api.types.is_string_dtype(p[col]), col
    for col in ("rlnCenteredCoordinateXAngst", "rlnAngleRot"):
        assert p[col].dtype == np.float64
    assert p["rlnOpticsGroup"].dtype == np.int64
    t = read_star(GOLDEN / "align" / "tilt_series" / "TS_01.star")["TS_01"]
    assert t["rlnMicrographName"].iloc[0] == "1@tilt_series/TS_01.mrcs"
    # The smallest value in the file keeps its exact decimal value (1.867900517e-04).
    assert t["rlnTomoXTilt"].iloc[0] == -1.867900517e-04


def test_numeric_looking_names_stay_strings(tmp_path):
    df = pd.DataFrame({"rlnTomoName": ["1", "2"], "rlnTomoParticleName": ["1/1", "2/1"], "rlnOpticsGroup": [1, 1]})
    write_star({"particles": df}, tmp_path / "p.star")
    back = read_star(tmp_path / "p.star")["particles"]
    assert list(back["rlnTomoName"]) == ["1", "2"]
    assert back["rlnOpticsGroup"].dtype == np.int64


def test_vector_cells_round_trip(tmp_path):
    p = read_star(GOLDEN / "subtomo" / "relion" / "subtomo2d" / "particles.star")["particles"]
    cell = p["rlnTomoVisibleFrames"].iloc[0]
    assert cell == "[" + ",".join(["1"] * 31) + "]"
    frames = parse_vector(cell, dtype=int)
    assert frames.dtype.kind == "i" and frames.shape == (31,)
    assert format_vector(frames) == cell
    coeffs = read_star(GOLDEN / "subtomo_motion_deform" / "truth" / "tilt_series" / "TS_01.star")["TS_01"][
        "rlnTomoDeformationCoefficients"
    ]
    c0 = parse_vector(coeffs.iloc[0])
    assert c0.shape == (72,)  # 3x3 spline grid, 2 components, 4 Hermite terms
    assert c0[0] == 1.34429267496
    assert np.array_equal(parse_vector(format_vector(c0)), c0)
    # Written without spaces, a vector is one token: the file reads back the same string.
    df = pd.DataFrame({"rlnTomoVisibleFrames": ["[1,0,1]", "[0,0,1]"], "x": [1.5, 2.0]})
    write_star({"particles": df}, tmp_path / "v.star")
    back = read_star(tmp_path / "v.star")["particles"]
    assert list(back["rlnTomoVisibleFrames"]) == ["[1,0,1]", "[0,0,1]"]
    assert list(parse_vector(back["rlnTomoVisibleFrames"].iloc[0], dtype=int)) == [1, 0, 1]
    assert parse_vector("[]").shape == (0,)


def test_full_precision_floats(tmp_path):
    values = np.array([0.1, 1 / 3, -1.867900517e-04, 12345.678901234567, 1e-300])
    write_star({"t": pd.DataFrame({"rlnX": values})}, tmp_path / "f.star")
    back = read_star(tmp_path / "f.star")["t"]["rlnX"].to_numpy()
    assert np.array_equal(back, values)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(InputError) as e:
        read_star(tmp_path / "nope.star")
    assert "nope.star" in str(e.value)


def test_require_columns_names_file_table_column():
    df = pd.DataFrame({"a": [1]})
    with pytest.raises(InputError) as e:
        require_columns(df, ["a", "rlnTomoName"], "x.star", "particles")
    msg = str(e.value)
    assert "x.star" in msg and "data_particles" in msg and "rlnTomoName" in msg
    assert e.value.field == "data_particles/rlnTomoName"


def test_integer_labels_written_as_integers(tmp_path):
    df = pd.DataFrame({"rlnOpticsGroup": [1.0, 2.0], "rlnTomoSizeX": [320.0, 256.0], "rlnVoltage": [300.0, 300.0]})
    write_star({"global": df}, tmp_path / "i.star")
    text = (tmp_path / "i.star").read_text()
    assert "1 320 300.0" in text and "2 256 300.0" in text
