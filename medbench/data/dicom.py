"""DICOM images through pydicom, with the display pipeline done right.

One single-frame DICOM file becomes one PIL image, in the order the standard gives (PS3.4 N.2):

1. decode the pixel data (pydicom; compressed syntaxes through its pylibjpeg / pillow plugins);
   pydicom keeps only the *Bits Stored* bits (12-, 14-, 15-bit data in 16-bit words) and their sign;
2. modality LUT: *Rescale Slope/Intercept* or a *Modality LUT Sequence* (``apply_modality_lut``);
3. VOI: the file's *VOI LUT Sequence*, else its first *Window Center/Width* (``apply_voi_lut``),
   scaled from the VOI output range; a file with neither is stretched min..max;
4. *MONOCHROME1* (high values dark) is inverted so bone is bright, as in MONOCHROME2;
5. quantised to 8-bit ``L`` (default) or 16-bit ``I;16``. Colour files (RGB, YBR_* converted to RGB,
   PALETTE COLOR through its palette) must be 8-bit and come out ``RGB`` unchanged.

Refused with a `DicomError` naming the file: not DICOM, no pixel data, more than one frame, a
photometric interpretation other than those above, a transfer syntax no installed plugin decodes,
truncated pixel data. `DICOM_PIPELINE` is the summary recorded on a Dataset (``preprocessing``).

Usage::

    image = read_dicom("s1/1.dcm").image            # PIL "L"
    read_dicom("s1/1.dcm", bits=16).steps           # {"modality": "rescale 1*x-1024", "voi": "window ...", ...}
    im = open_image(path)                           # .dcm through read_dicom, anything else through PIL
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from medbench.errors import UserError

DICOM_SUFFIXES = (".dcm", ".dicom")
GRAY = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
DICOM_PIPELINE = {
    "reader": "pydicom",
    "order": "bits stored -> modality LUT (rescale) -> VOI LUT or first window (else min-max) -> "
             "MONOCHROME1 inverted -> 8-bit L",
    "colour": "RGB/YBR/PALETTE COLOR 8-bit -> RGB",
    "frames": "single-frame only",
}


class DicomError(UserError):
    """A DICOM file that cannot become an image; the message names the file and why."""


@dataclass
class DicomImage:
    image: Image.Image
    steps: dict = field(default_factory=dict)  # what was applied to this file


def is_dicom_path(path) -> bool:
    return str(path).lower().endswith(DICOM_SUFFIXES)


def open_image(path) -> Image.Image:
    """Any image file as a fully decoded PIL image: DICOM through `read_dicom`, the rest through PIL."""
    if is_dicom_path(path):
        return read_dicom(path).image
    with Image.open(path) as im:
        im.load()
        return im.copy()


def read_dicom(path, *, bits: int = 8, data: bytes | None = None) -> DicomImage:
    """Decode one single-frame DICOM file to a display image (see the module docstring).

    `data`: the file's bytes when the caller has already read them (`path` then only names it in messages)."""
    import io

    import numpy as np
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    path = Path(path)
    try:
        ds = pydicom.dcmread(path if data is None else io.BytesIO(data))
    except FileNotFoundError:
        raise DicomError(f"{path}: DICOM file not found") from None
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise DicomError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        kind = ds.get("Modality") or ds.get("SOPClassUID", "unknown")
        raise DicomError(f"{path}: the DICOM file has no pixel data (modality/class {kind}); it is not an image")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise DicomError(f"{path}: multi-frame DICOM ({frames} frames); medbench reads one image per file "
                         f"(split the frames into separate files)")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in GRAY + COLOUR:
        raise DicomError(f"{path}: photometric interpretation {photometric or '(missing)'!r} is not supported "
                         f"(supported: {', '.join(GRAY + COLOUR)})")
    syntax = ds.file_meta.get("TransferSyntaxUID") if "file_meta" in dir(ds) else None
    syntax_name = getattr(syntax, "name", str(syntax or "unknown"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = ds.pixel_array
    except NotImplementedError as e:
        raise DicomError(f"{path}: transfer syntax {syntax_name!r} cannot be decoded here ({e}); "
                         f"see docs/data.md for the syntaxes that work") from None
    except (RuntimeError, ValueError, AttributeError, OSError) as e:
        first = str(e).strip().splitlines()
        raise DicomError(f"{path}: cannot decode the pixel data ({syntax_name}): "
                         f"{' '.join(s.strip() for s in first)[:300]}") from None
    steps: dict = {"transfer_syntax": syntax_name, "photometric": photometric,
                   "bits_stored": int(ds.get("BitsStored") or 0), "shape": list(raw.shape)}

    if photometric in COLOUR:
        if int(ds.get("BitsAllocated") or 8) != 8 and photometric != "PALETTE COLOR":
            raise DicomError(f"{path}: {ds.BitsAllocated}-bit colour DICOM is not supported (only 8-bit colour)")
        rgb = apply_color_lut(raw, ds) if photometric == "PALETTE COLOR" else raw
        if rgb.dtype != np.uint8:  # a 16-bit palette: keep the top 8 bits
            rgb = (rgb >> 8).astype(np.uint8)
        steps["output"] = "RGB"
        return DicomImage(Image.fromarray(np.ascontiguousarray(rgb)), steps)
    if raw.ndim != 2:
        raise DicomError(f"{path}: expected one grayscale frame, got pixel array of shape {raw.shape}")

    values = apply_modality_lut(raw, ds)
    if "ModalityLUTSequence" in ds:
        steps["modality"] = "modality LUT sequence"
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        steps["modality"] = f"rescale {float(ds.get('RescaleSlope', 1)):g}*x{float(ds.get('RescaleIntercept', 0)):+g}"
    else:
        steps["modality"] = "none"
    low, high, steps["voi"] = _voi(values, ds, apply_voi_lut, np)
    if low is None:
        low, high = float(values.min()), float(values.max())
    else:  # a VOI LUT indexes by integer value; rescaled values are integral in practice
        integral = values if np.issubdtype(values.dtype, np.integer) else np.rint(values).astype(np.int64)
        values = apply_voi_lut(integral if "VOILUTSequence" in ds else values, ds, index=0)
    values = values.astype(np.float64)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
        steps["inverted"] = True
    if bits == 8:
        steps["output"] = "L"
        return DicomImage(Image.fromarray(np.round(scaled * 255).astype(np.uint8)), steps)
    steps["output"] = "I;16"
    return DicomImage(Image.fromarray(np.round(scaled * 65535).astype(np.uint16)), steps)


def _voi(values, ds, apply_voi_lut, np) -> tuple[float | None, float | None, str]:
    """(low, high, description) of the VOI output range, or (None, None, ...) for a min-max stretch."""
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        out_bits = int(seq[0].LUTDescriptor[2])
        return 0.0, float(2 ** out_bits - 1), f"VOI LUT sequence ({out_bits}-bit output)"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        # pydicom's windowing maps everything below the window to its y_min and above to y_max:
        # probing with two extreme values reads that output range from pydicom itself.
        with np.errstate(over="ignore"):
            low, high = apply_voi_lut(np.array([-1e300, 1e300]), ds, index=0)
        center, width = (_first(ds.WindowCenter), _first(ds.WindowWidth))
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
        return float(low), float(high), f"window center {center:g} width {width:g} ({function})"
    return None, None, "min-max (no window or VOI LUT in the file)"


def _first(value) -> float:
    return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else float(value)
