"""Trajectories, optimisation sets, FSC tables and MRC files."""
from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest

from tomo_refine_plugin.compute.errors import InputError
from tomo_refine_plugin.compute.io import (
    OptimisationSet,
    TrajectorySet,
    read_fsc,
    read_mrc,
    read_mrc_header_shape,
    read_optimisation_set,
    read_particle_set,
    read_star,
    read_trajectories,
    resolve_inputs,
    write_fsc,
    write_mrc,
    write_optimisation_set,
    write_star,
    write_trajectories,
)

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


@pytest.mark.parametrize("dataset", ["align", "subtomo_motion_deform"])
def test_trajectories_round_trip(dataset, tmp_path):
    path = GOLDEN / dataset / "truth" / "motion.star"
    tr = read_trajectories(path)
    p = read_particle_set(GOLDEN / dataset / "truth" / "particles.star" if dataset != "align"
                          else GOLDEN / "align" / "particles.star")
    assert tr.names() == p.particle_names()
    shifts = tr.for_particles(p.particle_names(), 31)
    assert shifts.shape == (len(p.particles), 31, 3) and shifts.dtype == np.float64
    raw = read_star(path)
    first = p.particle_names()[0]
    assert np.array_equal(shifts[0], raw[first][["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy())
    write_trajectories(tr, tmp_path / "m.star")
    again = read_star(tmp_path / "m.star")
    assert list(again) == list(raw)
    assert again["general"] == raw["general"]
    for k in raw:
        if k != "general":
            pd.testing.assert_frame_equal(raw[k], again[k], check_exact=True)


def test_trajectories_motion_present_in_deform_dataset():
    tr = read_trajectories(GOLDEN / "subtomo_motion_deform" / "truth" / "motion.star")
    assert max(np.abs(s).max() for s in tr.shifts_angst.values()) > 0.1


def test_trajectories_missing_names_zero_and_length_check():
    tr = TrajectorySet({"a/1": np.ones((3, 3))})
    out = tr.for_particles(["b/1", "a/1"], 3)
    assert np.array_equal(out[0], np.zeros((3, 3))) and np.array_equal(out[1], np.ones((3, 3)))
    with pytest.raises(InputError, match="frames"):
        tr.for_particles(["a/1"], 4)


def test_positional_trajectories(tmp_path):
    blocks = {"general": {"rlnParticleNumber": 2}}
    for i in range(2):
        blocks[str(i)] = pd.DataFrame({"rlnOriginXAngst": [float(i)] * 2, "rlnOriginYAngst": [0.0] * 2,
                                       "rlnOriginZAngst": [0.0] * 2})
    write_star(blocks, tmp_path / "m.star")
    with pytest.warns(UserWarning, match="position"):
        tr = read_trajectories(tmp_path / "m.star", particle_names=["T/1", "T/2"])
    assert tr.for_particles(["T/2"], 2)[0, 0, 0] == 1.0


def test_optimisation_set_read_write_and_override(tmp_path):
    o = read_optimisation_set(GOLDEN / "align" / "optimisation_set.star")
    assert o.particles == "particles.star" and o.tomograms == "tomograms.star"
    assert o.reference_map1 == "ref_half1.mrc" and o.reference_mask == "mask.mrc" and o.trajectories is None
    assert o.resolved("particles").samefile(GOLDEN / "align" / "particles.star")
    write_optimisation_set(o, tmp_path / "o.star")
    raw = read_star(tmp_path / "o.star")
    assert list(raw) == [""] and raw[""]["rlnTomoParticlesFile"] == "particles.star"
    assert read_optimisation_set(tmp_path / "o.star") == OptimisationSet(**{
        k: getattr(o, k) for k in ("particles", "tomograms", "reference_map1", "reference_map2", "reference_mask")
    }, path=tmp_path / "o.star")
    truth = GOLDEN / "subtomo_motion_deform" / "truth" / "optimisation_set.star"
    r = resolve_inputs(i=truth, p="mine.star", fsc="f.star")
    assert r.particles == "mine.star" and r.tomograms == "truth/tomograms.star"
    assert r.trajectories == "truth/motion.star" and r.reference_fsc == "f.star"
    with pytest.raises(InputError, match="--mot"):
        resolve_inputs(p="a.star").require("trajectories", "--mot")


def test_fsc_read_write(tmp_path):
    f = read_fsc(GOLDEN / "align" / "fsc.star")
    assert f["rlnSpectralIndex"].dtype == np.int64 and f["rlnFourierShellCorrelationCorrected"].iloc[0] == 1.0
    idx = np.arange(4)
    res = idx / 48.0
    write_fsc(tmp_path / "fsc.star", idx, res, [1.0, 0.9, 0.5, 0.1])
    g = read_fsc(tmp_path / "fsc.star")
    assert g["rlnAngstromResolution"].iloc[0] == 999.0 and g["rlnAngstromResolution"].iloc[2] == 24.0
    write_star({"fsc": pd.DataFrame({"rlnSpectralIndex": [0]})}, tmp_path / "bad.star")
    with pytest.raises(InputError, match="rlnFourierShellCorrelationCorrected"):
        read_fsc(tmp_path / "bad.star")


@pytest.mark.parametrize("float16,mode", [(False, 2), (True, 12)])
def test_mrc_write_read(tmp_path, float16, mode):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) / 7
    write_mrc(tmp_path / "v.mrc", data, 1.5, float16=float16)
    back, voxel = read_mrc(tmp_path / "v.mrc")
    assert voxel == 1.5 and back.shape == (4, 5, 6)
    assert back.dtype == (np.float16 if float16 else np.float32)
    assert np.array_equal(back, data.astype(back.dtype))
    with mrcfile.open(tmp_path / "v.mrc", header_only=True) as m:
        assert int(m.header.mode) == mode
    assert read_mrc_header_shape(tmp_path / "v.mrc") == (6, 5, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mrc"]


def test_mrc_bad_input(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_mrc(tmp_path / "none.mrc")
    (tmp_path / "junk.mrc").write_bytes(b"not an mrc file" * 3)
    with pytest.raises(InputError) as e:
        read_mrc(tmp_path / "junk.mrc")
    assert "junk.mrc" in str(e.value)
    with pytest.raises(InputError):
        read_mrc_header_shape(tmp_path / "junk.mrc")
    # Truncated data: a valid header, half the bytes.
    write_mrc(tmp_path / "t.mrc", np.ones((8, 8, 8)), 1.0)
    raw = (tmp_path / "t.mrc").read_bytes()
    (tmp_path / "t.mrc").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputError, match="t.mrc"):
        read_mrc(tmp_path / "t.mrc")


def test_failed_mrc_write_leaves_nothing(tmp_path):
    with pytest.raises(Exception):
        write_mrc(tmp_path / "x.mrc", np.ones((2, 2, 2)), voxel_size_angst="not a number")
    assert list(tmp_path.iterdir()) == []


def test_positional_trajectories_refuse_name_lookup(tmp_path):
    blocks = {"general": {"rlnParticleNumber": 1},
              "0": pd.DataFrame({"rlnOriginXAngst": [1.0], "rlnOriginYAngst": [0.0], "rlnOriginZAngst": [0.0]})}
    write_star(blocks, tmp_path / "m.star")
    with pytest.warns(UserWarning):
        tr = read_trajectories(tmp_path / "m.star")
    with pytest.raises(InputError, match="particle_names"):
        tr.for_particles(["T/1"], 1)


def test_booleans_and_array_cells_written_relion_style(tmp_path):
    df = pd.DataFrame({"rlnTomoName": ["a", "b"], "flag": [True, False]})
    df["rlnTomoVisibleFrames"] = pd.Series([np.array([1, 0, 1]), np.array([0, 1, 1])], dtype=object)
    write_star({"particles": df, "general": {"rlnTomoSubTomosAre2DStacks": True}}, tmp_path / "x.star")
    back = read_star(tmp_path / "x.star")
    assert list(back["particles"]["flag"]) == [1, 0]
    assert list(back["particles"]["rlnTomoVisibleFrames"]) == ["[1,0,1]", "[0,1,1]"]
    assert back["general"]["rlnTomoSubTomosAre2DStacks"] == 1
