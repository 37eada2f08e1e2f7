"""Frame sources (compute/frames.py) and align's one-tilt-at-a-time reading: the same numbers as from an
in-memory stack, with the input never written and the whole series never needed."""
import shutil

import mrcfile
import numpy as np
import pytest

from tomo_refine_plugin.compute.align.ccmaps import compute_cc_maps
from tomo_refine_plugin.compute.align.neighbours import subtract_predicted_particles
from tomo_refine_plugin.compute.align.program import AlignOptions, _load_inputs, align_tilt_series, run_align
from tomo_refine_plugin.compute.errors import InputError
from tomo_refine_plugin.compute.frames import ArrayFrames, SpilledFrames, as_frames
from tomo_refine_plugin.compute.io.star import read_star, write_star
from tomo_refine_plugin.compute.io.tomograms import TiltSeriesRows, load_tilt_series, read_tomogram_set
from tomo_refine_plugin.compute.power_spectrum import noise_power_spectra
from tomo_refine_plugin.tests.test_align_neighbours import _dataset, _engine_inputs


class ReadOnlyFrames:
    """Only shape and read_frame, counting the reads: what a source on disk offers."""

    def __init__(self, stack):
        self._stack = stack
        self.shape = stack.shape
        self.reads = 0

    def read_frame(self, f, out=None):
        self.reads += 1
        frame = np.empty(self.shape[1:], np.float32) if out is None else out
        frame[...] = self._stack[f]
        return frame


def test_spilled_frames_round_trip_in_any_order():
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(5, 7, 9)).astype(np.float32)
    with SpilledFrames(stack.shape) as spill:
        for f in (3, 0, 4, 1, 2):
            spill.write_frame(f, stack[f])
        out = np.empty((7, 9), np.float32)
        for f in (2, 4, 0):
            assert spill.read_frame(f, out=out) is out
            np.testing.assert_array_equal(out, stack[f])
        np.testing.assert_array_equal(spill.read_frame(1), stack[1])
        with pytest.raises(ValueError, match="expected"):
            spill.write_frame(0, np.zeros((9, 7), np.float32))


def test_a_full_temporary_folder_is_a_clear_error(monkeypatch):
    with SpilledFrames((2, 4, 4)) as spill:
        def full(*_):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(spill, "_fh", type("Full", (), {"seek": lambda *_: None, "write": full,
                                                           "close": lambda *_: None, "name": "x"})())
        with pytest.raises(InputError, match=r"(?s)No space left on device.*TMPDIR.*GB free"):
            spill.write_frame(0, np.zeros((4, 4), np.float32))


def test_array_frames_read_views_and_write_in_place():
    stack = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    frames = as_frames(stack)
    assert isinstance(frames, ArrayFrames) and as_frames(frames) is frames
    assert np.shares_memory(frames.read_frame(1), stack)
    frames.write_frame(0, np.ones((3, 4)))
    assert np.all(stack[0] == 1)
    with pytest.raises(ValueError, match="n_tilts, H, W"):
        ArrayFrames(np.zeros((3, 4)))


def test_tilt_series_frames_on_disk_equal_the_loaded_stack(tmp_path):
    root = _dataset(tmp_path / "d", n_tilts=5)
    inputs = _load_inputs(AlignOptions(o=str(tmp_path / "unused"), b=32, i=str(root / "optimisation_set.star")))
    stack = load_tilt_series(inputs.tset, "TS_01")
    with TiltSeriesRows(inputs.tset, "TS_01") as frames:
        assert frames.shape == stack.shape
        for f in (4, 0, 2):
            np.testing.assert_array_equal(frames.read_frame(f), stack[f])
        np.testing.assert_array_equal(noise_power_spectra(frames, 32), noise_power_spectra(stack, 32))


def test_maps_and_subtraction_from_a_frame_source_equal_those_from_the_array(tmp_path):
    """Same maps and residual whether the series is an array or read frame by frame; the residual goes to the
    given output and the source is left as it was."""
    root = _dataset(tmp_path / "d")
    box = 48
    stack, g, optics, pos, mats, half, halves, dose = _engine_inputs(root, box)
    freq = np.ones((g.n_tilts, box, box // 2 + 1))
    mask = dose > 0.02
    source = ReadOnlyFrames(stack.copy())
    a = compute_cc_maps(stack, g, optics, pos, mats, half, halves, freq, dose, mask, 6)
    b = compute_cc_maps(source, g, optics, pos, mats, half, halves, freq, dose, mask, 6)
    assert source.reads == g.n_tilts  # each tilt read once
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.tilt_sums, b.tilt_sums)

    in_place = stack.copy()
    own_a, power_a = subtract_predicted_particles(in_place, g, optics, pos, mats, half, halves, dose, mask)
    with SpilledFrames(stack.shape) as residual:
        own_b, power_b = subtract_predicted_particles(source, g, optics, pos, mats, half, halves, dose, mask,
                                                      out=residual)
        np.testing.assert_array_equal(own_a, own_b)
        np.testing.assert_array_equal(power_a, power_b)
        for f in range(g.n_tilts):
            np.testing.assert_array_equal(residual.read_frame(f), in_place[f])
    np.testing.assert_array_equal(source._stack, stack)  # the source is not written
    assert not np.array_equal(in_place, stack)  # None as out: the array itself became the residual


def test_align_from_frames_equals_align_from_the_array_and_never_writes_it(tmp_path):
    root = _dataset(tmp_path / "d", angle_err_deg=(0.3, 0.3, 0.3), shift_err_px=1.5, position_err_px=1.0)
    box = 48
    stack, g, optics, pos, mats, half, halves, dose = _engine_inputs(root, box)
    opts = AlignOptions(o=str(tmp_path / "unused"), b=box, r=6, i=str(root / "optimisation_set.star"))
    reference = _load_inputs(opts).reference
    original = stack.copy()
    source = ReadOnlyFrames(stack.copy())
    g1, p1, _ = align_tilt_series(stack, g, optics, pos, mats, half, reference, opts, log=lambda *a: None)
    g2, p2, _ = align_tilt_series(source, g, optics, pos, mats, half, reference, opts, log=lambda *a: None)
    np.testing.assert_array_equal(stack, original)
    np.testing.assert_array_equal(g1.projection_matrices(), g2.projection_matrices())
    np.testing.assert_array_equal(p1, p2)
    # The source is read by passes over the tilts, none keeping them all: noise spectrum, round-1 maps (plus the
    # tilts recentred after the global shift search) and the subtraction; round 2 reads the residual.
    assert 3 * g.n_tilts <= source.reads < 4 * g.n_tilts


def test_align_reads_a_series_split_over_files_as_the_single_stack(tmp_path):
    """One MRC per tilt (as some pipelines write them), listed out of file order: the frames come back in
    tilt-table order and the alignment is bit-identical to the one from the single stack."""
    root = _dataset(tmp_path / "d", angle_err_deg=(0.3, 0.3, 0.3), shift_err_px=1.5, position_err_px=1.0)
    split = tmp_path / "split"
    shutil.copytree(root, split)
    star = split / "tilt_series" / "TS_01.star"
    blocks = read_star(star)
    table = blocks["TS_01"]
    stack = mrcfile.read(root / "tilt_series" / "TS_01.mrcs")
    names = []
    for f in range(len(table)):
        path = split / "tilt_series" / f"TS_01_{len(table) - f:03d}.mrc"  # names that sort against tilt order
        with mrcfile.new(path) as m:
            m.set_data(stack[f])
            m.voxel_size = 6.0
        names.append(f"1@tilt_series/{path.name}")
    table["rlnMicrographName"] = names
    write_star(blocks, star)
    (split / "tilt_series" / "TS_01.mrcs").unlink()
    results = []
    for data in (root, split):
        r = run_align(AlignOptions(o=str(tmp_path / f"o_{data.name}"), b=48, r=6,
                                   i=str(data / "optimisation_set.star"), j=2), log=lambda *a: None)
        results.append((read_tomogram_set(r.tomograms_star).geometry("TS_01").projection_matrices(),
                        read_star(r.particles_star)["particles"]))
    (t1, p1), (t2, p2) = results
    np.testing.assert_array_equal(t1, t2)
    for col in ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"):
        np.testing.assert_array_equal(p1[col].to_numpy(), p2[col].to_numpy())
