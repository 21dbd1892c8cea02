"""cfviewer.imaging: loading real and self-written radiographs, resize, window, writers."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from cfviewer import imaging
from cfviewer.errors import CfviewerError, ImageLoadError

SIIM = "dicom/1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
SIIM_MONO1 = "dicom/Fake_MONOHR1.dcm"


def ramp(h: int = 40, w: int = 30) -> np.ndarray:
    return np.linspace(-1024, 1024, h * w, dtype=np.float32).reshape(h, w)


def pydicom_testfile(name: str) -> str:
    try:
        from pydicom.data import get_testdata_file
    except ImportError:  # pragma: no cover
        pytest.skip("pydicom.data unavailable")
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return str(path)


def raw_dicom(tmp_path: Path, stored: np.ndarray, name: str = "raw.dcm", **attrs) -> Path:
    """An uncompressed 16-bit-allocated DICOM holding ``stored`` verbatim, plus ``attrs``
    (None deletes an attribute written by write_dicom)."""
    base = imaging.write_dicom(tmp_path / name, np.zeros(stored.shape[-2:], np.float32),
                               patient_id="RAW", bits_stored=int(attrs.pop("BitsStored", 12)))
    ds = pydicom.dcmread(base)
    for kw, val in attrs.items():
        if val is None:
            if kw in ds:
                delattr(ds, kw)
        else:
            setattr(ds, kw, val)
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    dtype = "<i2" if ds.PixelRepresentation == 1 else "<u2"
    ds.PixelData = np.ascontiguousarray(stored).astype(dtype).tobytes()
    ds.save_as(base, enforce_file_format=True)
    return base


def expected_linear_window(v: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window onto [0, 1], then to [-1024, 1024]."""
    c, w = center - 0.5, width - 1
    y = np.clip((v - c) / w + 0.5, 0.0, 1.0)
    y[v <= c - w / 2] = 0.0
    y[v > c + w / 2] = 1.0
    return (y * 2048 - 1024).astype(np.float32)


# ------------------------------------------------------------------ real files


def test_siim_jpeg_baseline_cr_loads(shared_data: Path) -> None:
    out = imaging.load_with_meta(shared_data / SIIM)
    px = out.pixels
    assert px.dtype == np.float32 and px.shape == (1024, 1024)
    assert px.min() >= -1024 and px.max() <= 1024 and px.std() > 100
    assert out.meta["transfer_syntax"] == "1.2.840.10008.1.2.4.50"
    assert out.meta["photometric"] == "MONOCHROME2" and out.meta["bits_stored"] == 8
    assert out.meta["pixel_spacing"] == pytest.approx((0.168, 0.168))
    # 8 bit without VOI maps like torchxrayvision: x / 255 * 2048 - 1024
    stored = pydicom.dcmread(shared_data / SIIM).pixel_array.astype(np.float64)
    np.testing.assert_allclose(px, stored / 255 * 2048 - 1024, atol=1e-3)


def test_siim_monochrome1_twin_is_the_inverse(shared_data: Path) -> None:
    a = imaging.load(shared_data / SIIM)
    b = imaging.load_with_meta(shared_data / SIIM_MONO1)
    assert b.meta["photometric"] == "MONOCHROME1" and b.meta["inverted"]
    np.testing.assert_allclose(b.pixels, -a, atol=1e-3)


def test_rg1_15bit_monochrome1_window_and_inversion() -> None:
    path = pydicom_testfile("RG1_UNCR.dcm")
    out = imaging.load_with_meta(path)
    px = out.pixels
    assert px.shape == (1955, 1841) and px.dtype == np.float32
    assert -1024 <= px.min() < px.max() <= 1024
    assert out.meta["bits_stored"] == 15 and out.meta["inverted"]
    # manual: window 15000/30000 onto the 15-bit range 0..32767, then MONOCHROME1 inverted
    stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
    np.testing.assert_allclose(px, -expected_linear_window(stored, 15000, 30000), atol=0.01)
    # anatomy: the mediastinum (centre) is denser, so brighter, than either lung
    h, w = px.shape
    band = px[h // 3: 2 * h // 3]
    centre = band[:, w // 2 - 50: w // 2 + 50].mean()
    assert centre > band[:, w // 4 - 50: w // 4 + 50].mean() + 200
    assert centre > band[:, 3 * w // 4 - 50: 3 * w // 4 + 50].mean() + 200


def test_rg1_jpeg2000_lossless_identical_and_lossy_close() -> None:
    ref = imaging.load(pydicom_testfile("RG1_UNCR.dcm"))
    j2kr = imaging.load_with_meta(pydicom_testfile("RG1_J2KR.dcm"))
    assert j2kr.meta["transfer_syntax"] == "1.2.840.10008.1.2.4.90"
    np.testing.assert_array_equal(j2kr.pixels, ref)
    lossy = imaging.load(pydicom_testfile("RG1_J2KI.dcm"))
    diff = np.abs(lossy - ref)
    assert 0 < diff.mean() < 10 and diff.max() < 64


def test_nih_png_loads(shared_data: Path) -> None:
    path = shared_data / "nih_samples" / "00000001_000.png"
    out = imaging.load_with_meta(path)
    assert out.pixels.shape == (512, 512) and out.meta["format"] == "png"
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    np.testing.assert_allclose(out.pixels, grey / 255 * 2048 - 1024, atol=1e-3)


# ------------------------------------------------------------------ own DICOM writer


@pytest.mark.parametrize("bits", [12, 16])
def test_write_dicom_round_trips(tmp_path: Path, bits: int) -> None:
    img = ramp()
    uid = imaging.deterministic_uid("study", 1)
    path = imaging.write_dicom(tmp_path / "a.dcm", img, patient_id="PH-0001", study_uid=uid,
                               bits_stored=bits, pixel_spacing=(0.7, 0.8), PatientSex="F")
    out = imaging.load_with_meta(path)
    np.testing.assert_allclose(out.pixels, img, atol=1024 / (2**bits - 1) + 1e-4)
    assert out.meta["patient_id"] == "PH-0001" and out.meta["study_uid"] == uid
    assert out.meta["modality"] == "DX" and out.meta["photometric"] == "MONOCHROME2"
    assert out.meta["pixel_spacing"] == pytest.approx((0.7, 0.8))
    assert out.meta["bits_stored"] == bits
    ds = pydicom.dcmread(path)
    assert path.read_bytes()[128:132] == b"DICM"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert ds.BitsAllocated == 16 and ds.HighBit == bits - 1 and ds.PatientSex == "F"
    assert ds.StudyDate and ds.SeriesInstanceUID and ds.SOPInstanceUID
    assert imaging.deterministic_uid("study", 1) == uid != imaging.deterministic_uid("study", 2)


def test_write_png16_round_trips(tmp_path: Path) -> None:
    img = ramp(33, 50)
    path = imaging.write_png16(tmp_path / "a.png", img)
    with Image.open(path) as im:
        assert im.mode.startswith("I") and np.asarray(im).max() == 65535
    out = imaging.load_with_meta(path)
    assert out.meta["bits_stored"] == 16
    np.testing.assert_allclose(out.pixels, img, atol=1024 / 65535 + 1e-4)


def test_compressed_dicom_written_here_matches(tmp_path: Path) -> None:
    src = imaging.write_dicom(tmp_path / "a.dcm", ramp(64, 48), patient_id="P")
    for uid in (pydicom.uid.JPEG2000Lossless, pydicom.uid.RLELossless):
        ds = pydicom.dcmread(src)
        ds.compress(uid)
        ds.save_as(tmp_path / "c.dcm")
        np.testing.assert_array_equal(imaging.load(tmp_path / "c.dcm"), imaging.load(src))


def test_window_center_width_honoured(tmp_path: Path) -> None:
    stored = np.arange(0, 4096, 4, dtype=np.uint16).reshape(32, 32)
    path = raw_dicom(tmp_path, stored, WindowCenter=1000, WindowWidth=500)
    expected = expected_linear_window(stored.astype(np.float64), 1000, 500)
    np.testing.assert_allclose(imaging.load(path), expected, atol=0.01)


def test_rescale_slope_intercept_honoured(tmp_path: Path) -> None:
    stored = np.arange(0, 4096, 4, dtype=np.uint16).reshape(32, 32)
    path = raw_dicom(tmp_path, stored, RescaleSlope=2, RescaleIntercept=-1024,
                     WindowCenter=0, WindowWidth=1000)
    hu = stored.astype(np.float64) * 2 - 1024
    out = imaging.load_with_meta(path)
    np.testing.assert_allclose(out.pixels, expected_linear_window(hu, 0, 1000), atol=0.01)
    assert out.meta["modality_lut"] == {"slope": 2.0, "intercept": -1024.0}
    # without a window: the whole rescaled 12-bit range maps onto [-1024, 1024]
    path = raw_dicom(tmp_path, stored, name="nowin.dcm", RescaleSlope=2, RescaleIntercept=-1024,
                     WindowCenter=None, WindowWidth=None)
    out = imaging.load_with_meta(path)
    assert out.meta["source_range"] == (-1024.0, 4095 * 2 - 1024.0)
    np.testing.assert_allclose(out.pixels, stored / 4095 * 2048 - 1024, atol=0.01)


def test_voi_lut_sequence_preferred_over_window(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    lut = np.sqrt(np.arange(4096) / 4095.0) * 1023  # a 10-bit gamma LUT
    lut = np.rint(lut).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 10]
    item.add_new(0x00283006, "US", lut.tolist())  # LUT Data
    stored = np.arange(0, 4096, 4, dtype=np.uint16).reshape(32, 32)
    path = raw_dicom(tmp_path, stored, VOILUTSequence=[item])  # window tags stay as written
    out = imaging.load_with_meta(path)
    np.testing.assert_allclose(out.pixels, lut[stored] / 1023 * 2048 - 1024, atol=0.01)
    assert out.meta["voi"]["lut"]


def test_negative_slope_window_and_preambleless_dicom(tmp_path: Path) -> None:
    stored = np.arange(0, 4096, 4, dtype=np.uint16).reshape(32, 32)
    path = raw_dicom(tmp_path, stored, RescaleSlope=-1, RescaleIntercept=4095,
                     WindowCenter=2048, WindowWidth=4096)
    # value = 4095 - stored: a negative slope flips the image, the window keeps it full range
    np.testing.assert_allclose(imaging.load(path), -(stored / 4095 * 2048 - 1024), atol=0.51)

    img = ramp(64, 48)
    ds = pydicom.dcmread(imaging.write_dicom(tmp_path / "a.dcm", img, patient_id="P"))
    ds.preamble = None
    del ds.file_meta
    ds.save_as(tmp_path / "old.dcm", implicit_vr=True, little_endian=True)
    assert (tmp_path / "old.dcm").read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(imaging.load(tmp_path / "old.dcm"), img, atol=0.26)


def test_monochrome1_signed_and_multiframe(tmp_path: Path) -> None:
    stored = np.arange(0, 4096, 4, dtype=np.uint16).reshape(32, 32)
    mono1 = raw_dicom(tmp_path, stored, name="m1.dcm", PhotometricInterpretation="MONOCHROME1",
                      WindowCenter=None, WindowWidth=None)
    np.testing.assert_allclose(imaging.load(mono1), -(stored / 4095 * 2048 - 1024), atol=0.01)

    signed = (stored.astype(np.int32) - 2048).astype(np.int16)
    path = raw_dicom(tmp_path, signed, name="s.dcm", PixelRepresentation=1,
                     WindowCenter=None, WindowWidth=None)
    np.testing.assert_allclose(imaging.load(path), (signed + 2048) / 4095 * 2048 - 1024, atol=0.01)

    frames = np.stack([stored, 4095 - stored])
    path = raw_dicom(tmp_path, frames, name="mf.dcm", WindowCenter=None, WindowWidth=None)
    out = imaging.load_with_meta(path)
    assert out.meta["frames"] == 2 and out.pixels.shape == (32, 32)
    np.testing.assert_allclose(out.pixels, stored / 4095 * 2048 - 1024, atol=0.01)


# ------------------------------------------------------------------ PNG / JPEG / npy


def test_png_colour_modes_become_grey(tmp_path: Path) -> None:
    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = g / 255 * 2048 - 1024
    rgb = np.stack([g, g, g], -1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full_like(g, 7)])).save(tmp_path / "rgba.png")
    Image.fromarray(g).convert("P").save(tmp_path / "p.png")
    Image.fromarray(g).convert("LA").save(tmp_path / "la.png")
    for name in ("rgb", "rgba", "p", "la"):
        np.testing.assert_allclose(imaging.load(tmp_path / f"{name}.png"), expected, atol=0.01)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 255  # pure red: ITU-R 601 luma 0.299
    Image.fromarray(colour).save(tmp_path / "red.png")
    np.testing.assert_allclose(imaging.load(tmp_path / "red.png"), 0.299 * 2048 - 1024, atol=0.01)


def test_jpeg_grey_and_rgb(tmp_path: Path) -> None:
    g = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    Image.fromarray(g).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.stack([g] * 3, -1)).save(tmp_path / "c.jpeg", quality=95)
    for name in ("g.jpg", "c.jpeg"):
        out = imaging.load_with_meta(tmp_path / name)
        assert out.meta["format"] == "jpeg"
        assert np.abs(out.pixels - (g / 255 * 2048 - 1024)).mean() < 16


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    g = np.zeros((20, 40), np.uint8)
    g[:, :20] = 255  # left half bright
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(g).save(tmp_path / "o.jpg", quality=95, exif=exif)
    out = imaging.load(tmp_path / "o.jpg")
    assert out.shape == (40, 20)
    assert out[:20].mean() > 900 and out[20:].mean() < -900  # left became top


def test_npy(tmp_path: Path) -> None:
    img = ramp()
    np.save(tmp_path / "f.npy", img)
    np.testing.assert_array_equal(imaging.load(tmp_path / "f.npy"), img)
    np.save(tmp_path / "u.npy", np.full((4, 5), 65535, np.uint16))
    np.testing.assert_allclose(imaging.load(tmp_path / "u.npy"), 1024)
    np.save(tmp_path / "bad.npy", img * 3)
    with pytest.raises(ImageLoadError, match=r"\[-1024, 1024\]"):
        imaging.load(tmp_path / "bad.npy")


# ------------------------------------------------------------------ bad input


def _png_header_only(path: Path, w: int, h: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases: dict[str, tuple[Path, str]] = {}
    cases["missing"] = (tmp_path / "nope.png", "does not exist")
    cases["directory"] = (tmp_path, "directory")
    (tmp_path / "empty.dcm").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.dcm", "empty")
    (tmp_path / "notes.png").write_text("this is not an image\n" * 20)
    cases["text"] = (tmp_path / "notes.png", "not an image")
    (tmp_path / "x.txt").write_bytes(b"hello world")
    cases["extension"] = (tmp_path / "x.txt", "supported")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.tif")
    cases["tiff"] = (tmp_path / "a.tif", "unsupported format TIFF")
    png = imaging.write_png16(tmp_path / "full.png", ramp(64, 64))
    (tmp_path / "trunc.png").write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    cases["truncated png"] = (tmp_path / "trunc.png", "truncated")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(tmp_path / "f.jpg")
    (tmp_path / "trunc.jpg").write_bytes((tmp_path / "f.jpg").read_bytes()[:300])
    cases["truncated jpeg"] = (tmp_path / "trunc.jpg", "truncated")
    dcm = imaging.write_dicom(tmp_path / "full.dcm", ramp(64, 64), patient_id="T")
    (tmp_path / "trunc.dcm").write_bytes(dcm.read_bytes()[: dcm.stat().st_size - 3000])
    cases["truncated dicom"] = (tmp_path / "trunc.dcm", "truncated")
    (tmp_path / "junk.dcm").write_bytes(bytes(range(256)) * 4)
    cases["junk dicom"] = (tmp_path / "junk.dcm", "not a DICOM file")
    ds = pydicom.dcmread(dcm)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    cases["no pixel data"] = (tmp_path / "nopix.dcm", "no pixel data")
    cases["huge png"] = (_png_header_only(tmp_path / "huge.png", 20000, 20000), "megapixels")
    ds = pydicom.dcmread(dcm)
    ds.Rows = ds.Columns = 12000
    ds.save_as(tmp_path / "huge.dcm")
    cases["huge dicom"] = (tmp_path / "huge.dcm", "megapixels")
    ds = pydicom.dcmread(dcm)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no pydicom decoder
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds.save_as(tmp_path / "mpeg.dcm")
    cases["unsupported transfer syntax"] = (tmp_path / "mpeg.dcm", "1.2.840.10008.1.2.4.100")
    return cases


def test_every_bad_input_raises_image_load_error(tmp_path: Path) -> None:
    for label, (path, reason) in _bad_inputs(tmp_path).items():
        with pytest.raises(ImageLoadError) as info:
            imaging.load(path)
        msg = str(info.value)
        assert str(path) in msg, label
        assert reason.lower() in msg.lower(), f"{label}: {msg}"
        assert isinstance(info.value, CfviewerError)


def test_megapixel_limit_checked_before_decoding(tmp_path: Path) -> None:
    # 110 MP: above our limit, below Pillow's own decompression-bomb error (179 MP)
    png = _png_header_only(tmp_path / "huge.png", 11000, 10000)
    dcm = imaging.write_dicom(tmp_path / "d.dcm", ramp(8, 8), patient_id="T")
    ds = pydicom.dcmread(dcm)
    ds.Rows, ds.Columns = 11000, 10000
    ds.save_as(dcm)
    for path in (png, dcm):
        tracemalloc.start()
        with pytest.raises(ImageLoadError, match="= 110 megapixels exceeds the limit of 100"):
            imaging.load(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 20_000_000, f"{path.name}: {peak} bytes traced"


def test_missing_codec_names_transfer_syntax_and_package(tmp_path: Path, monkeypatch) -> None:
    from pydicom.pixels import get_decoder

    src = imaging.write_dicom(tmp_path / "a.dcm", ramp(64, 48), patient_id="P")
    ds = pydicom.dcmread(src)
    ds.compress(pydicom.uid.JPEG2000Lossless)
    ds.save_as(tmp_path / "j2k.dcm")
    monkeypatch.setattr(get_decoder(pydicom.uid.JPEG2000Lossless), "_available", {})
    with pytest.raises(ImageLoadError) as info:
        imaging.load(tmp_path / "j2k.dcm")
    msg = str(info.value)
    assert str(tmp_path / "j2k.dcm") in msg and "1.2.840.10008.1.2.4.90" in msg
    assert "JPEG 2000" in msg and "pip install" in msg and "pylibjpeg-openjpeg" in msg


# ------------------------------------------------------------------ resize / window


def test_resize_center_crops_and_antialiases() -> None:
    wide = np.full((60, 180), -1024, np.float32)
    wide[:, 60:120] = 1024  # only the centre square is bright
    out = imaging.resize(wide, 30)
    assert out.shape == (30, 30) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1024, atol=1e-3)
    assert imaging.resize(wide, (20, 40)).shape == (20, 40)
    assert imaging.resize_to(wide, (10, 90)).shape == (10, 90)
    # a one-pixel checkerboard shrunk 8x: antialiasing averages it to ~0 (no aliasing)
    checker = np.where(np.indices((128, 128)).sum(0) % 2 == 0, 1024.0, -1024.0).astype(np.float32)
    small = imaging.resize(checker, 16)
    assert np.abs(small).max() < 100
    batch = imaging.resize(np.stack([checker, checker[::-1]]), 16)
    assert batch.shape == (2, 16, 16)
    up = imaging.resize(ramp(), 100)
    assert up.min() >= -1024 and up.max() <= 1024


def test_window_and_display() -> None:
    img = np.array([[-1024, 0, 1024, 50, 100]], np.float32)
    np.testing.assert_array_equal(imaging.window(img), [[0, 128, 255, 134, 140]])
    np.testing.assert_array_equal(imaging.window(img, center=50, width=100), [[0, 0, 255, 128, 255]])
    assert imaging.to_display_uint8(img, 0, 100).tolist() == [[0, 0, 255, 128, 255]]
    with pytest.raises(imaging.WindowError, match="width"):
        imaging.window(img, 0, 0)


# ------------------------------------------------------------ 16-bit colour PNG


def _png16_colour(path: Path, samples: np.ndarray, colour_type: int) -> Path:
    """A 16-bit PNG written here byte by byte (Pillow cannot write 16-bit colour), cycling the
    five row filters (None, Sub, Up, Average, Paeth) so a decoder must undo them with the right
    bytes per pixel (6 for RGB, 8 for RGBA, 4 for grey + alpha)."""
    h, w, c = samples.shape
    bpp = 2 * c
    raw = np.frombuffer(samples.astype(">u2").tobytes(), np.uint8).reshape(h, w * bpp).astype(np.int16)
    out = bytearray()
    prev = np.zeros(w * bpp, np.int16)
    for y in range(h):
        row, ftype = raw[y], y % 5
        left = np.concatenate([np.zeros(bpp, np.int16), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int16), prev[:-bpp]])
        if ftype == 0:
            pred = np.zeros_like(row)
        elif ftype == 1:
            pred = left
        elif ftype == 2:
            pred = prev
        elif ftype == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out += bytes([ftype]) + ((row - pred) % 256).astype(np.uint8).tobytes()
        prev = row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(out)))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("colour_type,channels", [(2, 3), (6, 4), (4, 2)])
def test_png16_colour_keeps_16_bits(tmp_path: Path, colour_type: int, channels: int) -> None:
    rng = np.random.default_rng(colour_type)
    h, w = 23, 37
    base = rng.integers(0, 256, (h, w, 1)) * 256  # high bytes
    low = rng.integers(0, 256, (h, w, channels))  # low bytes: invisible at 8 bits
    samples = np.clip(base + low + rng.integers(-300, 300, (h, w, channels)), 0, 65535).astype(np.uint16)
    path = _png16_colour(tmp_path / "c16.png", samples, colour_type)
    out = imaging.load_with_meta(path)
    grey = samples[..., 0].astype(np.float64) if channels == 2 else samples[..., :3] @ np.array([0.299, 0.587, 0.114])
    want = grey / 65535 * 2048 - 1024  # the 8-bit luma weights, on 0..65535
    assert out.pixels.shape == (h, w)
    assert np.abs(out.pixels - want).max() < 1e-3  # cut to 8 bits the error reaches ~8
    assert out.meta["bits_stored"] == 16 and out.meta["file_bit_depth"] == 16
    assert out.meta["source_range"] == (0.0, 65535.0)
    # a difference in the low byte alone still shows
    flat = np.full((8, 8, channels), 0x1200, np.uint16)
    flat[4:] += 0x34
    p2 = _png16_colour(tmp_path / "flat.png", flat, colour_type)
    px = imaging.load(p2)
    assert px[4:].mean() - px[:4].mean() == pytest.approx(0x34 / 65535 * 2048, rel=1e-3)


def test_size_problem_names_the_minimum() -> None:
    assert imaging.size_problem(32, 500) is None
    msg = imaging.size_problem(1, 1)
    assert "1x1" in msg and f"{imaging.MIN_SIDE} px" in msg
    assert "31x64" in imaging.size_problem(64, 31)


def test_auto_window_is_the_percentiles_with_flat_fallbacks() -> None:
    img = ramp()
    lo, hi = imaging.display_window(img)
    assert imaging.AUTO_PERCENTILES == (0.5, 99.5)
    assert (lo, hi) == tuple(float(v) for v in np.percentile(img.astype(np.float64), (0.5, 99.5)))
    assert imaging.display_window(img, (0.0, 100.0)) == (-1024.0, 1024.0)
    # almost flat (the percentiles span under one unit) -> min..max; flat -> the full range
    speck = np.zeros((20, 20), np.float32)
    speck[0, 0] = 300.0
    assert imaging.display_window(speck) == (0.0, 300.0)
    assert imaging.display_window(np.full((8, 8), 5.0, np.float32)) == (-1024.0, 1024.0)


def test_the_one_8bit_windowing_serves_draw_and_viewer() -> None:
    from cfviewer.explain import draw, render
    from cfviewer.ui import viewer

    img = ramp(50, 60)
    assert draw.display_window is imaging.display_window and render.to_grey is draw.to_grey
    np.testing.assert_array_equal(draw.to_grey(img), imaging.to_display_uint8(img, *imaging.display_window(img)))
    np.testing.assert_array_equal(draw.to_grey(img, (-100.0, 100.0)), imaging.window(img, 0, 200))
    w = viewer.preset_window(img, "Auto")  # the same window, in the sliders' whole units
    lo, hi = imaging.display_window(img)
    assert (w.center, w.width) == (round((lo + hi) / 2), round(hi - lo))
    np.testing.assert_array_equal(viewer.windowed(img, w), imaging.window(img, w.center, w.width))
    with pytest.raises(imaging.WindowError):
        draw.to_grey(img, (5.0, 5.0))  # an empty window is refused, not divided by zero
