"""Radiograph I/O: load DICOM / PNG / JPEG / .npy into the project's image convention,
resize for a model, window for display, and write 16-bit PNG and DICOM.

Image convention (torchxrayvision's): one channel, float32, H x W, values in [-1024, 1024],
bright = dense (bone white, lung dark).

Intensity mapping
-----------------
Every source has a *display range* [lo, hi] that is mapped linearly onto [-1024, 1024]:

* PNG / JPEG: the full range of the sample type, 0..255 for 8 bit and 0..65535 for 16 bit
  (so an 8-bit PNG maps exactly as torchxrayvision does: ``x / 255 * 2048 - 1024``).
  Colour (RGB, RGBA, palette, grey+alpha, CMYK) is converted to grey with the ITU-R 601 luma
  weights; alpha is dropped. A 16-bit colour PNG keeps its 16 bits (Pillow alone would keep 8):
  the same weights, on 0..65535.
* DICOM (pydicom): the stored values go through the Modality LUT (Rescale Slope/Intercept or a
  Modality LUT Sequence), then through the VOI LUT (a VOI LUT Sequence, else Window
  Center/Width, first of several; LINEAR, LINEAR_EXACT and SIGMOID functions) when present.
  The display range is the output range of the last step as the standard defines it:
  the window maps onto the Bits-Stored range after rescale (pydicom's ``apply_windowing``),
  a VOI LUT onto 0..2**bits-1 of its descriptor; without a VOI step it is the full Bits-Stored
  range after the Modality LUT (an 8-bit CR maps like an 8-bit PNG, a 15-bit CR by 0..32767).
  MONOCHROME1 is inverted after mapping (``-x``), so dense is always bright.
  Multi-frame: the first frame only is decoded. Compressed transfer syntaxes decode through
  pydicom's plugins (pylibjpeg-libjpeg for JPEG, pylibjpeg-openjpeg for JPEG 2000, ...).
* ``.npy``: float arrays are taken as already in the convention (must lie in
  [-1024, 1024]); uint8 / uint16 arrays map like 8- / 16-bit PNGs.

Every failure a user can cause (missing, empty, truncated, not an image, unsupported format
or transfer syntax, more than 100 megapixels, checked from the header before decoding)
raises :class:`cfviewer.errors.ImageLoadError` naming the file, the reason and the fix.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cfviewer.errors import CfviewerError, ImageLoadError

LO, HI = -1024.0, 1024.0
MAX_PIXELS = 100_000_000
"""Refuse images above 100 megapixels (checked from the header, before decoding)."""

MIN_SIDE = 32
"""The smallest readable radiograph: `study import` refuses images whose short side is below
32 px (a reader cannot see a finding in them, and an explainer has nothing to show)."""


def size_problem(height: int, width: int, min_side: int = MIN_SIDE) -> str | None:
    """Why an H x W image is too small to read (None when it is large enough)."""
    if min(int(height), int(width)) < min_side:
        return (f"is {int(width)}x{int(height)} px, below the minimum of {min_side} px on the short side "
                "(too small to read or explain); import the original, full-resolution file")
    return None

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)

_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"\x93NUMPY": "npy",
}
_OTHER_MAGIC = {  # recognised, but not supported: say what it is
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
    b"GIF8": "GIF",
    b"RIFF": "RIFF/WebP",
    b"%PDF": "PDF",
    b"PK\x03\x04": "ZIP archive",
    b"\x1f\x8b": "gzip archive",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000 (bare .jp2)",
}
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ""}
SUPPORTED = "DICOM (.dcm), PNG, JPEG, NumPy .npy"

# pip packages providing pydicom decoders, by transfer syntax UID.
_CODEC_PACKAGES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Extended (12 bit)
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",  # RLE Lossless
}

_SOP_CLASSES = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


class WindowError(CfviewerError, ValueError):
    """A display window that cannot be applied (width <= 0)."""


@dataclass
class LoadedImage:
    """Pixels in the project convention plus what was learnt from the file."""

    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading


def load(path: str | Path) -> np.ndarray:
    """Load a radiograph as float32 H x W in [-1024, 1024] (bright = dense)."""
    return load_with_meta(path).pixels


def load_with_meta(path: str | Path) -> LoadedImage:
    """Load a radiograph and its metadata.

    ``meta`` always holds ``format`` ("dicom" | "png" | "jpeg" | "npy"), ``path``,
    ``original_shape``, ``source_range`` (the [lo, hi] mapped to [-1024, 1024]), ``inverted``,
    and, where known, ``modality``, ``photometric``, ``bits_stored``, ``patient_id``,
    ``pixel_spacing`` (row, col) in mm, UIDs, ``transfer_syntax`` and the VOI step applied.
    """
    p = Path(path)
    kind = _sniff(p)
    try:
        if kind == "dicom":
            img = _load_dicom(p)
        elif kind in ("png", "jpeg"):
            img = _load_pillow(p, kind)
        else:
            img = _load_npy(p)
    except ImageLoadError:
        raise
    except MemoryError as exc:  # pragma: no cover - depends on the machine
        raise ImageLoadError(p, "out of memory while decoding; use a smaller image") from exc
    except Exception as exc:  # decoder errors: truncated / corrupt data
        raise ImageLoadError(
            p, f"corrupt or truncated {kind.upper()} data ({type(exc).__name__}: {exc}); "
            "re-export or re-copy the file"
        ) from exc
    img.meta.setdefault("path", str(p))
    px = img.pixels
    if px.ndim != 2 or px.shape[0] < 1 or px.shape[1] < 1:
        raise ImageLoadError(p, f"decoded to shape {px.shape}, expected a 2-D image")
    if not np.isfinite(px).all():
        raise ImageLoadError(p, "contains NaN or infinite values")
    img.pixels = np.ascontiguousarray(np.clip(px, LO, HI), dtype=np.float32)
    return img


def _sniff(p: Path) -> str:
    """Decide the format from the file's first bytes; raise for missing/empty/unsupported."""
    if not p.exists():
        raise ImageLoadError(p, "file does not exist; check the path")
    if p.is_dir():
        raise ImageLoadError(p, "is a directory, not an image file")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ImageLoadError(p, f"cannot be read ({exc.strerror}); check permissions") from exc
    if size == 0:
        raise ImageLoadError(p, "file is empty (0 bytes); re-export or re-copy it")
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    for magic, name in _OTHER_MAGIC.items():
        if head.startswith(magic):
            raise ImageLoadError(
                p, f"unsupported format {name}; supported: {SUPPORTED}. "
                "Convert it, e.g. to 16-bit PNG"
            )
    if p.suffix.lower() in _DICOM_SUFFIXES:
        if _looks_like_raw_dicom(head):
            return "dicom"  # DICOM without the 128-byte preamble (old ACR-NEMA style files)
        if p.suffix:
            raise ImageLoadError(
                p, "not a DICOM file (no 'DICM' marker at byte 128, no DICOM header) and not "
                f"another supported format ({SUPPORTED}); re-export it from the PACS/viewer"
            )
    raise ImageLoadError(
        p, f"not an image in a supported format (suffix {p.suffix or 'none'!r}, "
        f"unrecognised content); supported: {SUPPORTED}"
    )


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A preamble-less DICOM starts with a little-endian group 0x0002 or 0x0008 tag."""
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00")


def _too_big(p: Path, rows: int, cols: int) -> None:
    if rows * cols > MAX_PIXELS:
        raise ImageLoadError(
            p, f"{cols} x {rows} = {rows * cols / 1e6:.0f} megapixels exceeds the limit of "
            f"{MAX_PIXELS // 1_000_000} megapixels; downscale it before importing"
        )


def _to_unit_range(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly onto [-1024, 1024] (float32)."""
    if hi == lo:
        return np.zeros(x.shape, np.float32)
    y = (np.asarray(x, np.float64) - lo) * ((HI - LO) / (hi - lo)) + LO
    return y.astype(np.float32)


def _grey(arr: np.ndarray) -> np.ndarray:
    """H x W x C -> H x W by ITU-R 601 luma (alpha dropped); H x W passes through."""
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] in (1, 2):  # grey (+ alpha)
        return arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return arr[..., :3].astype(np.float64) @ _LUMA
    raise ValueError(f"cannot convert an array of shape {arr.shape} to grey")


# ----- PNG / JPEG


def _load_pillow(p: Path, kind: str) -> LoadedImage:
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except Image.DecompressionBombError as exc:  # Pillow's own, far above ours
            m = re.search(r"\((\d+) pixels\)", str(exc))
            count = f"{int(m.group(1)) / 1e6:.0f} megapixels" if m else "the image"
            raise ImageLoadError(
                p, f"{count} exceeds the limit of {MAX_PIXELS // 1_000_000} megapixels; "
                "downscale it before importing"
            ) from exc
        with im:
            w, h = im.size
            _too_big(p, h, w)  # header only, nothing decoded yet
            mode = im.mode
            im.load()
            transposed = ImageOps.exif_transpose(im)  # honour an EXIF Orientation tag
            if transposed is not im:
                im, (w, h) = transposed, transposed.size
            bits = 8
            if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                arr = np.asarray(im, dtype=np.uint16)
                bits = 16
            elif mode == "I":  # 16-bit PNG on older Pillow, or 32-bit int
                arr = np.asarray(im, dtype=np.int64)
                bits = 16 if kind == "png" or arr.max(initial=0) <= 65535 else 32
            elif mode == "F":
                raise ImageLoadError(p, "floating-point PNG/JPEG data is not supported; save as 16-bit")
            elif mode == "1":
                arr = np.asarray(im.convert("L"))
            elif kind == "png" and mode in ("RGB", "RGBA") and _png_header(p)[0] == 16:
                arr = _png16_colour(p, _png_header(p)[1])  # Pillow would keep only the high byte
                bits = 16
            elif mode in ("L", "LA", "RGB", "RGBA"):
                arr = np.asarray(im)
            else:  # P, PA, CMYK, YCbCr, LAB, ...
                arr = np.asarray(im.convert("RGBA" if "A" in mode or "transparency" in im.info else "RGB"))
    maxval = float(2**bits - 1)
    grey = _grey(arr)
    return LoadedImage(
        _to_unit_range(grey, 0.0, maxval),
        {
            "format": kind,
            "mode": mode,
            # the file's own sample depth (16-bit colour PNGs keep all 16 bits, see _png16_colour)
            "file_bit_depth": _png_bit_depth(p) if kind == "png" else 8,
            "bits_stored": bits,
            "photometric": "MONOCHROME2" if grey is arr else "RGB->grey",
            "original_shape": (h, w),
            "source_range": (0.0, maxval),
            "inverted": False,
            "modality": None,
            "patient_id": None,
            "pixel_spacing": None,
        },
    )


def _png_bit_depth(p: Path) -> int:
    return _png_header(p)[0]


def _png_header(p: Path) -> tuple[int, int]:
    """(bit depth, colour type) from the PNG's IHDR chunk ((8, -1) when it cannot be read)."""
    with p.open("rb") as fh:
        head = fh.read(26)
    return (head[24], head[25]) if len(head) >= 26 and head[12:16] == b"IHDR" else (8, -1)


def _png16_colour(p: Path, colour_type: int) -> np.ndarray:
    """H x W x C uint16 samples of a 16-bit colour PNG (colour type 2 RGB, 4 grey + alpha,
    6 RGBA), EXIF orientation applied.

    Pillow has no 16-bit colour mode: it unpacks these at 8 bits, keeping the high byte of each
    big-endian sample. Its own (C) decoder is run with a different unpacker instead, of the same
    pixel size so the row filters are undone correctly: for RGB/RGBA once with the ``;16B``
    unpacker (high bytes) and once with ``;16L`` (which takes the other byte of each pair: the low
    bytes), then combined; for grey + alpha (4 bytes a pixel) the plain 8-bit ``RGBA`` unpacker
    returns the four bytes (grey high, grey low, alpha high, alpha low) as they are."""
    from PIL import Image, ImageOps

    if colour_type == 4:
        passes = [("RGBA", "RGBA")]
    elif colour_type in (2, 6):
        base = "RGB" if colour_type == 2 else "RGBA"
        passes = [(base, base + ";16B"), (base, base + ";16L")]
    else:
        raise ImageLoadError(p, f"unexpected 16-bit PNG colour type {colour_type}; save it as a 16-bit "
                             "greyscale PNG")
    planes = []
    for mode, rawmode in passes:
        with Image.open(p) as src:
            tile = list(src.tile)
            if src.mode != mode or len(tile) != 1 or tile[0][0] != "zip":
                raise ImageLoadError(p, "16-bit colour PNG with an unsupported layout (animated or "
                                     "several image chunks); save it as a 16-bit greyscale PNG")
            t = tile[0]
            src.tile = [t._replace(args=rawmode) if hasattr(t, "_replace") else (*t[:3], rawmode)]
            src.load()
            out = ImageOps.exif_transpose(src)
            planes.append(np.array(out, dtype=np.uint8))
    if colour_type == 4:
        b = planes[0].astype(np.uint16)
        return np.stack([(b[..., 0] << 8) | b[..., 1], (b[..., 2] << 8) | b[..., 3]], axis=-1)
    hi, lo = (q.astype(np.uint16) for q in planes)
    return (hi << 8) | lo


# ----- .npy


def _load_npy(p: Path) -> LoadedImage:
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ImageLoadError(p, f"not a plain numeric .npy array ({exc})") from exc
    shape = arr.shape
    if arr.ndim == 3 and 1 in (shape[0], shape[-1]):
        arr = arr[0] if shape[0] == 1 else arr[..., 0]
    if arr.ndim == 3 and shape[-1] in (3, 4):
        hw = shape[:2]
    elif arr.ndim == 2:
        hw = shape
    else:
        raise ImageLoadError(p, f"array of shape {shape} is not an H x W image")
    _too_big(p, hw[0], hw[1])
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        maxval = float(np.iinfo(arr.dtype).max)
        out = _to_unit_range(_grey(np.asarray(arr)), 0.0, maxval)
        rng = (0.0, maxval)
    elif np.issubdtype(arr.dtype, np.floating):
        out = np.asarray(_grey(np.asarray(arr)), dtype=np.float32)
        finite = np.isfinite(out)
        if not finite.all():
            raise ImageLoadError(p, "contains NaN or infinite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < LO - 1e-3 or hi > HI + 1e-3:
            raise ImageLoadError(
                p, f"float values span [{lo:g}, {hi:g}]; .npy floats must already be in "
                "[-1024, 1024] (scale with x / max * 2048 - 1024) or be saved as uint8/uint16"
            )
        rng = (LO, HI)
    else:
        raise ImageLoadError(p, f"unsupported array dtype {arr.dtype}; use float32, uint8 or uint16")
    return LoadedImage(
        out,
        {
            "format": "npy",
            "dtype": str(arr.dtype),
            "original_shape": tuple(int(s) for s in hw),
            "source_range": rng,
            "inverted": False,
            "modality": None,
            "photometric": None,
            "bits_stored": None,
            "patient_id": None,
            "pixel_spacing": None,
        },
    )


# ----- DICOM


def _load_dicom(p: Path) -> LoadedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # large values (the pixel data) are read only when decoded, after the size check
        ds = pydicom.dcmread(p, force=True, defer_size="2 MB")
    except InvalidDicomError as exc:
        raise ImageLoadError(p, f"not a valid DICOM file ({exc})") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageLoadError(p, f"truncated or corrupt DICOM ({exc}); re-export the file") from exc
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageLoadError(p, "DICOM file has no pixel data (e.g. a structured report or "
                             "a DICOMDIR); choose the image instance")
    for kw in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if kw not in ds:
            raise ImageLoadError(p, f"DICOM lacks the required attribute {kw}; the file is incomplete")
    rows, cols = int(ds.Rows), int(ds.Columns)
    _too_big(p, rows, cols)
    if rows == 0 or cols == 0:
        raise ImageLoadError(p, f"DICOM has an empty image ({cols} x {rows})")

    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is None:  # no file meta (preamble-less file): use the encoding that was read
        from pydicom.dataset import FileMetaDataset

        implicit, little = getattr(ds, "original_encoding", (True, True))
        tsyntax = (pydicom.uid.ImplicitVRLittleEndian if implicit
                   else pydicom.uid.ExplicitVRLittleEndian if little
                   else pydicom.uid.ExplicitVRBigEndian)
        if getattr(ds, "file_meta", None) is None:
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = tsyntax
    ts_name = getattr(tsyntax, "name", str(tsyntax))
    if tsyntax.is_compressed:
        _require_decoder(p, tsyntax)

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about e.g. odd-length pixel data
        ds.pixel_array_options(index=0 if frames > 1 else None)
        arr = ds.pixel_array
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        arr = arr[0]

    photometric = str(ds.PhotometricInterpretation).strip().upper()
    bits_stored = int(ds.get("BitsStored", ds.BitsAllocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    meta = _dicom_meta(ds, str(tsyntax), ts_name)
    meta.update(frames=frames, bits_stored=bits_stored, photometric=photometric,
                original_shape=(rows, cols))

    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        values, lo, hi, steps = _dicom_grey_values(ds, arr, bits_stored, signed)
        meta["voi"] = steps.get("voi")
        meta["modality_lut"] = steps.get("modality")
    else:  # colour: RGB / YBR (pydicom converts YBR to RGB) / PALETTE COLOR
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
            lut_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            hi = float(2 ** lut_bits - 1)
        else:
            hi = float(2**bits_stored - 1)
        values, lo = _grey(arr), 0.0
        meta["voi"] = None
        meta["modality_lut"] = None
    out = _to_unit_range(values, lo, hi)
    inverted = photometric == "MONOCHROME1"
    if inverted:
        out = -out
    meta.update(source_range=(lo, hi), inverted=inverted)
    return LoadedImage(out, meta)


def _require_decoder(p: Path, tsyntax: Any) -> None:
    from pydicom.pixels import get_decoder

    name = getattr(tsyntax, "name", str(tsyntax))
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise ImageLoadError(
            p, f"transfer syntax {tsyntax} ({name}) is not supported by pydicom; "
            "export or convert it to an uncompressed (or JPEG / JPEG 2000) DICOM before importing"
        ) from None
    if not decoder.is_available:
        pkgs = _CODEC_PACKAGES.get(str(tsyntax), "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
        raise ImageLoadError(
            p, f"no decoder installed for transfer syntax {tsyntax} ({name}); "
            f"install one with: pip install {pkgs}"
        )


def _dicom_grey_values(
    ds: Any, arr: np.ndarray, bits_stored: int, signed: bool
) -> tuple[np.ndarray, float, float, dict[str, Any]]:
    """Modality LUT then VOI LUT; returns values and the display range [lo, hi]."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    steps: dict[str, Any] = {}
    if signed:
        lo, hi = -(2.0 ** (bits_stored - 1)), 2.0 ** (bits_stored - 1) - 1
    else:
        lo, hi = 0.0, 2.0**bits_stored - 1
    # Stored values outside Bits Stored (garbage in the unused high bits) are clipped.
    values: np.ndarray = np.clip(arr, lo, hi)

    if ds.get("ModalityLUTSequence"):
        item = ds.ModalityLUTSequence[0]
        values = apply_modality_lut(values, ds)
        lo, hi = 0.0, 2.0 ** int(item.LUTDescriptor[2]) - 1
        steps["modality"] = "lut"
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept  # pydicom needs both
        values = values.astype(np.float64) * slope + intercept
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        steps["modality"] = {"slope": slope, "intercept": intercept}

    voi_seq = ds.get("VOILUTSequence")
    has_lut = bool(voi_seq) and voi_seq[0].get("LUTDescriptor") is not None \
        and voi_seq[0].get("LUTData") is not None
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if has_lut:
        lut_bits = int(voi_seq[0].LUTDescriptor[2])
        # LUT inputs are integers (the Modality LUT output); rescale made them float
        values = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0, prefer_lut=True)
        lo, hi = 0.0, float(max(2**lut_bits - 1, float(np.max(values, initial=0))))
        steps["voi"] = {"lut": str(voi_seq[0].get("LUTExplanation", "")) or True}
    elif has_window:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        values = apply_voi_lut(np.asarray(values, np.float64), ds, index=0, prefer_lut=False)
        steps["voi"] = {"center": center, "width": width,
                        "function": str(ds.get("VOILUTFunction", "LINEAR"))}
        # pydicom maps the window onto the Bits-Stored range after rescale, unsorted: with a
        # negative slope its "y_min" is the larger value, and that end must become -1024.
        slope = float(ds.get("RescaleSlope", 1) or 1) if "ModalityLUTSequence" not in ds else 1.0
        if slope < 0:
            lo, hi = hi, lo
    return np.asarray(values), float(lo), float(hi), steps


def _first(v: Any) -> float:
    from pydicom.multival import MultiValue

    return float(v[0]) if isinstance(v, (list, tuple, MultiValue)) else float(v)


def _dicom_meta(ds: Any, tsyntax: str, ts_name: str) -> dict[str, Any]:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        spacing_t = (float(spacing[0]), float(spacing[1])) if spacing else None
    except (TypeError, ValueError, IndexError):
        spacing_t = None
    if spacing_t is not None and (spacing_t[0] <= 0 or spacing_t[1] <= 0):
        spacing_t = None  # e.g. RG1_UNCR carries 0\0

    def s(kw: str) -> str | None:
        v = ds.get(kw)
        return None if v is None or str(v) == "" else str(v)

    return {
        "format": "dicom",
        "transfer_syntax": tsyntax,
        "transfer_syntax_name": ts_name,
        "modality": s("Modality"),
        "patient_id": s("PatientID"),
        "pixel_spacing": spacing_t,
        "study_uid": s("StudyInstanceUID"),
        "series_uid": s("SeriesInstanceUID"),
        "sop_uid": s("SOPInstanceUID"),
        "sop_class_uid": s("SOPClassUID"),
        "view_position": s("ViewPosition"),
        "body_part": s("BodyPartExamined"),
    }


# --------------------------------------------------------------------------- resize


def resize_to(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize H x W (or N x H x W) to exactly ``shape`` = (h, w), antialiased.

    Bilinear with antialiasing (a triangle filter widened by the scale factor when
    shrinking, like Pillow's BILINEAR reduce), so no ringing: the output stays within the
    input's range. The aspect ratio is NOT kept; see :func:`resize`.
    """
    import torch
    import torch.nn.functional as F

    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected H x W or N x H x W, got shape {arr.shape}")
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"target shape must be positive, got {shape}")
    if arr.shape[-2:] == (h, w):
        return arr.copy()
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t[None, None] if arr.ndim == 2 else t[:, None]
    with torch.no_grad():
        out = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    out_np = out[0, 0].numpy() if arr.ndim == 2 else out[:, 0].numpy()
    return np.ascontiguousarray(out_np, dtype=np.float32)


def center_crop_box(h: int, w: int, aspect: float = 1.0) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the largest centred crop of an H x W image with width / height
    == ``aspect`` (the field of view a square model sees when ``aspect`` = 1). Torch-free: the
    reader pages use it to outline what the model saw."""
    h, w = int(h), int(w)
    if w / h > aspect:  # too wide
        cw = max(1, int(round(h * aspect)))
        x0 = (w - cw) // 2
        return 0, h, x0, x0 + cw
    ch = max(1, int(round(w / aspect)))
    y0 = (h - ch) // 2
    return y0, y0 + ch, 0, w


def center_crop(img, aspect: float = 1.0):
    """The largest centred crop of H x W (or N x H x W; numpy or torch) with width / height ==
    ``aspect`` (see :func:`center_crop_box`)."""
    h, w = img.shape[-2:]
    y0, y1, x0, x1 = center_crop_box(h, w, aspect)
    return img[..., y0:y1, x0:x1]


def resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then antialiased resize.

    ``size`` = R gives R x R after a centred square crop (what torchxrayvision's
    XRayCenterCrop + XRayResizer do); ``size`` = (h, w) crops to the aspect w / h first.
    A model's input is made by its bundle (``Bundle.model_input``), not here.
    Works on H x W or N x H x W; returns float32.
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    return resize_to(center_crop(img, w / h), (h, w))


# --------------------------------------------------------------------------- display
# The one mapping of the image convention to 8-bit grey (every picture cfviewer shows or
# writes: the viewer, overlays, panels, GIFs, PNGs) and the one "Auto" window. They live here,
# with the convention they map, torch-free: the reader's process uses them.

AUTO_PERCENTILES = (0.5, 99.5)
"""The "Auto" window: the image's own 0.5th to 99.5th percentile."""


def display_window(image: np.ndarray, percentiles: tuple[float, float] = AUTO_PERCENTILES) -> tuple[float, float]:
    """Grey window (lo, hi) from the image's own ``percentiles`` (default: "Auto").

    A range under one image unit (an almost flat image) falls back to the image's min..max,
    and when that is under one unit too, to the full range [-1024, 1024]."""
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(arr, percentiles)
    if not hi - lo >= 1.0:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not hi - lo >= 1.0:
            lo, hi = LO, HI
    return float(lo), float(hi)


def to_display_uint8(img: np.ndarray, lo: float = LO, hi: float = HI) -> np.ndarray:
    """Map [lo, hi] linearly onto 0..255 (clipped, rounded) for display."""
    if not hi > lo:
        raise WindowError(f"display range [{lo:g}, {hi:g}] is empty: the upper bound must exceed the lower")
    arr = np.asarray(img, dtype=np.float32)
    y = (arr - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def window(img: np.ndarray, center: float | None = None, width: float | None = None) -> np.ndarray:
    """Window/level in image units ([-1024, 1024]) to uint8; None = the full range
    (center 0, width 2048)."""
    c = 0.0 if center is None else float(center)
    wd = HI - LO if width is None else float(width)
    if not wd > 0:
        raise WindowError(f"window width {wd:g} must be positive; choose a width above 0")
    return to_display_uint8(img, c - wd / 2, c + wd / 2)


# --------------------------------------------------------------------------- writing


def _quantise(img: np.ndarray, maxval: int) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected an H x W image, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values")
    q = np.rint((np.clip(arr, LO, HI) - LO) * (maxval / (HI - LO)))
    return q.astype(np.uint16 if maxval > 255 else np.uint8)


def write_png16(path: str | Path, img: np.ndarray) -> Path:
    """Write a 16-bit greyscale PNG: [-1024, 1024] -> 0..65535 (clipped)."""
    from PIL import Image

    p = Path(path)
    q = _quantise(img, 65535)
    Image.fromarray(q).save(p, format="PNG")
    return p


def deterministic_uid(*parts: object) -> str:
    """A DICOM UID under pydicom's root derived from ``parts`` (same parts, same UID)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(x) for x in parts]))


def write_dicom(
    path: str | Path,
    img: np.ndarray,
    *,
    patient_id: str,
    patient_name: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    modality: str = "DX",
    bits_stored: int = 12,
    study_date: str | _dt.date | None = None,
    **attributes: Any,
) -> Path:
    """Write ``img`` ([-1024, 1024]) as an uncompressed single-frame DICOM that :func:`load`
    reads back (to within one quantisation step, 2048 / (2**bits_stored - 1)).

    DX (Digital X-Ray, For Presentation) by default, CR or anything else as Secondary Capture;
    MONOCHROME2, 16 bits allocated, ``bits_stored`` (8..16) stored, unsigned, Rescale 1/0, a
    window covering the whole stored range, explicit VR little endian with a full file meta.
    UIDs not given are random (pass :func:`deterministic_uid` values for reproducible files).
    ``pixel_spacing`` (row, col) mm defaults to a 430 mm field of view (a 43 cm detector)
    over the longer side. ``study_date`` defaults to today. Further ``attributes`` are set by
    DICOM keyword (e.g. ``PatientSex="F"``, ``ViewPosition="AP"``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.datadict import tag_for_keyword
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    if not 8 <= int(bits_stored) <= 16:
        raise ValueError(f"bits_stored must be in 8..16, got {bits_stored}")
    bits_stored = int(bits_stored)
    q = _quantise(img, 2**bits_stored - 1).astype(np.uint16)
    rows, cols = q.shape
    if pixel_spacing is None:
        sp = 430.0 / max(rows, cols)
        pixel_spacing = (sp, sp)
    modality = modality.upper()
    sop_class = _SOP_CLASSES.get(modality, _SECONDARY_CAPTURE)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    sop_uid = sop_uid or generate_uid()
    if study_date is None:
        study_date = _dt.date.today()
    date_str = study_date.strftime("%Y%m%d") if isinstance(study_date, _dt.date) else str(study_date)

    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "CFVIEWER"

    ds = Dataset()
    ds.file_meta = fm
    ds.preamble = b"\x00" * 128
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"] if modality in _SOP_CLASSES else ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date_str
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "cfviewer"
    ds.ReferringPhysicianName = ""
    ds.PatientName = patient_name if patient_name is not None else patient_id
    ds.PatientID = str(patient_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.PresentationLUTShape = "IDENTITY"
        ds.RescaleType = "US"
        ds.DetectorType = "DIRECT"
        ds.ImagerPixelSpacing = [f"{pixel_spacing[0]:.6g}", f"{pixel_spacing[1]:.6g}"]
    elif sop_class == _SECONDARY_CAPTURE:
        ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [f"{pixel_spacing[0]:.6g}", f"{pixel_spacing[1]:.6g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.WindowCenter = f"{2 ** (bits_stored - 1)}"
    ds.WindowWidth = f"{2 ** bits_stored}"
    ds.VOILUTFunction = "LINEAR"
    for kw, val in attributes.items():
        if tag_for_keyword(kw) is None:
            raise ValueError(f"unknown DICOM keyword {kw!r}")
        setattr(ds, kw, val)
    ds.PixelData = q.astype("<u2").tobytes()

    p = Path(path)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    p.write_bytes(buf.getvalue())
    return p
