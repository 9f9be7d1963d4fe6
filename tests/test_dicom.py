"""DICOM pixel pipeline: pydicom's bundled test files and files written here with pydicom.

Expected images are computed in the tests from pydicom's own functions (apply_modality_lut,
apply_voi_lut) and the standard's output ranges, never hard-coded.
"""
from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset as DicomDataset
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, MPEG2MPML, SecondaryCaptureImageStorage, generate_uid

from medbench.data.dicom import DicomError, open_image, read_dicom
from medbench.data.resolve import load_dataset
from medbench.data.validate import DatasetError

warnings.filterwarnings("ignore", module="pydicom")


def bundled(name):
    return get_testdata_file(name)


def write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=16, *, signed=False, window=None,
                voi_lut=None, rescale=None, frames=None):
    """A minimal single-image DICOM file (Secondary Capture, explicit VR little endian)."""
    ds = DicomDataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID, "DX"
    ds.set_pixel_data(pixels, photometric, bits_stored)
    if signed:
        assert ds.PixelRepresentation == 1
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if voi_lut is not None:
        item = DicomDataset()
        first, out_bits, table = voi_lut
        item.add_new(0x00283002, "US", [len(table), first, out_bits])  # LUT Descriptor
        item.add_new(0x00283006, "US", [int(v) for v in table])  # LUT Data
        ds.VOILUTSequence = [item]
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.save_as(path, enforce_file_format=True)
    return path


def chest(bits=12):
    """A small radiograph-like array: background, soft tissue, and a bright 'bone' bar (high = dense)."""
    top = 2 ** bits - 1
    a = np.full((32, 32), int(top * 0.1), dtype=np.uint16)
    a[4:28, 4:28] = int(top * 0.4)  # soft tissue
    a[14:18, :] = int(top * 0.9)  # a rib: dense, high attenuation
    return a


# ---------------------------------------------------------------- bundled files


def test_mr_small_window_matches_pydicom_voi():
    path = bundled("MR_small.dcm")
    ds = pydicom.dcmread(path)
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    low, high = -(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1  # signed 16-bit window output range
    expected = np.round(np.clip((voi - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    got = read_dicom(path)
    assert got.image.mode == "L"
    assert np.array_equal(np.asarray(got.image), expected)
    assert got.steps["voi"].startswith("window center")


def test_ct_small_rescale_then_minmax():
    path = bundled("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.round((hu - hu.min()) / (hu.max() - hu.min()) * 255).astype(np.uint8)
    got = read_dicom(path)
    assert np.array_equal(np.asarray(got.image), expected)
    assert got.steps["modality"] == f"rescale 1*x{float(ds.RescaleIntercept):+g}"
    assert got.steps["voi"].startswith("min-max")


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_lossless_syntaxes_give_the_uncompressed_image(name):
    reference = np.asarray(read_dicom(bundled("MR_small.dcm")).image)
    got = read_dicom(bundled(name))
    assert np.array_equal(np.asarray(got.image), reference)
    assert got.steps["transfer_syntax"] == pydicom.dcmread(bundled(name)).file_meta.TransferSyntaxUID.name


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "JPGExtended.dcm", "693_J2KI.dcm", "SC_rgb_jpeg.dcm",
                                  "examples_palette.dcm", "SC_ybr_full_422_uncompressed.dcm"])
def test_compressed_and_colour_files_decode(name):
    ds = pydicom.dcmread(bundled(name))
    got = read_dicom(bundled(name))
    assert got.image.size == (ds.Columns, ds.Rows)
    assert got.image.mode == ("L" if ds.PhotometricInterpretation.startswith("MONOCHROME") else "RGB")


def test_bytes_already_read_give_the_same_image():
    path = bundled("MR_small_RLE.dcm")
    with open(path, "rb") as f:
        data = f.read()
    assert read_dicom(path, data=data).image.tobytes() == read_dicom(path).image.tobytes()
    with pytest.raises(DicomError, match=r"^named\.dcm: not a readable DICOM file"):
        read_dicom("named.dcm", data=b"not dicom")


def test_ybr_is_converted_to_rgb_like_pydicom():
    path = bundled("SC_ybr_full_422_uncompressed.dcm")
    assert np.array_equal(np.asarray(read_dicom(path).image), pydicom.dcmread(path).pixel_array)


@pytest.mark.parametrize("name, words", [
    ("rtplan.dcm", "no pixel data"),
    ("rtdose.dcm", "multi-frame DICOM (15 frames)"),
    ("MR_truncated.dcm", "cannot decode the pixel data"),
    ("JPEG-lossy.dcm", "cannot decode the pixel data (JPEG Extended"),
])
def test_bundled_bad_files_are_refused_naming_the_file(name, words):
    path = bundled(name)
    with pytest.raises(DicomError) as e:
        read_dicom(path)
    assert str(e.value).startswith(f"{path}: ") and words in str(e.value)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- files written here


def test_monochrome1_comes_out_upright_bone_bright(tmp_path):
    dense = chest(12)
    stored_m1 = (2 ** 12 - 1) - dense  # MONOCHROME1 stores dense tissue as LOW values (displayed white)
    m1 = read_dicom(write_dicom(tmp_path / "m1.dcm", stored_m1, "MONOCHROME1", 12))
    m2 = read_dicom(write_dicom(tmp_path / "m2.dcm", dense, "MONOCHROME2", 12))
    a1 = np.asarray(m1.image)
    assert a1[15, 16] > a1[8, 8] > a1[1, 1]  # rib brighter than soft tissue brighter than background
    assert np.array_equal(a1, np.asarray(m2.image))
    assert m1.steps["inverted"] is True and "inverted" not in m2.steps


def test_monochrome1_with_window_inverts_after_voi(tmp_path):
    dense = chest(12)
    window = (2048, 4096)
    m1 = read_dicom(write_dicom(tmp_path / "m1.dcm", 4095 - dense, "MONOCHROME1", 12, window=window))
    ds = pydicom.dcmread(tmp_path / "m1.dcm")
    voi = apply_voi_lut(ds.pixel_array, ds)
    expected = np.round((1 - np.clip(voi / 4095, 0, 1)) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(m1.image), expected)
    assert np.asarray(m1.image)[15, 16] > np.asarray(m1.image)[1, 1]


@pytest.mark.parametrize("bits", [12, 15, 16])
def test_bits_stored_bounds_the_window_output(tmp_path, bits):
    pixels = chest(bits)
    top = 2 ** bits - 1
    center, width = top * 0.5, top * 0.5
    got = read_dicom(write_dicom(tmp_path / "w.dcm", pixels, "MONOCHROME2", bits, window=(center, width)), bits=16)
    ds = pydicom.dcmread(tmp_path / "w.dcm")
    expected = np.round(np.clip(apply_voi_lut(ds.pixel_array, ds) / top, 0, 1) * 65535).astype(np.uint16)
    assert got.image.mode == "I;16"
    assert np.array_equal(np.asarray(got.image), expected)
    assert got.steps["bits_stored"] == bits


def test_high_bits_outside_bits_stored_are_ignored(tmp_path):
    pixels = chest(12)
    path = write_dicom(tmp_path / "a.dcm", pixels, "MONOCHROME2", 12)
    clean = np.asarray(read_dicom(path).image)
    ds = pydicom.dcmread(path)
    ds.PixelData = (pixels | 0xF000).astype(np.uint16).tobytes()  # garbage in bits 12-15 (overlay planes)
    ds.save_as(tmp_path / "b.dcm")
    assert np.array_equal(np.asarray(read_dicom(tmp_path / "b.dcm").image), clean)


def test_voi_lut_sequence_is_preferred_and_scaled_by_its_output_bits(tmp_path):
    pixels = chest(12)
    table = (np.sqrt(np.arange(4096) / 4095) * 255).astype(int)  # an 8-bit gamma-like LUT
    path = write_dicom(tmp_path / "lut.dcm", pixels, "MONOCHROME2", 12, window=(100, 10), voi_lut=(0, 8, table))
    got = read_dicom(path)
    ds = pydicom.dcmread(path)
    expected = np.round(apply_voi_lut(ds.pixel_array, ds, prefer_lut=True) / 255 * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(got.image), expected)
    assert got.steps["voi"] == "VOI LUT sequence (8-bit output)"


def test_signed_rescaled_ct_window(tmp_path):
    hu = np.array([[-1000, -200], [40, 1500]], dtype=np.int16).repeat(8, 0).repeat(8, 1)
    stored = (hu + 1024).astype(np.int16)
    path = write_dicom(tmp_path / "ct.dcm", stored, "MONOCHROME2", 16, signed=True, window=(40, 400), rescale=(1, -1024))
    got = np.asarray(read_dicom(path).image)
    ds = pydicom.dcmread(path)
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    low, high = -32768 - 1024, 32767 - 1024  # the signed range after rescale, as the standard defines it
    assert np.array_equal(got, np.round(np.clip((voi - low) / (high - low), 0, 1) * 255).astype(np.uint8))
    assert got[0, 0] == 0 and got[-1, -1] == 255  # air below the window, bone above it


def test_multiframe_and_unsupported_syntax_and_non_dicom_are_refused(tmp_path):
    path = write_dicom(tmp_path / "two.dcm", np.zeros((2, 8, 8), np.uint8), "MONOCHROME2", 8, frames=2)
    with pytest.raises(DicomError, match=r"two\.dcm: multi-frame DICOM \(2 frames\)"):
        read_dicom(path)
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", chest(8).astype(np.uint8), "MONOCHROME2", 8))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x0a" + b"\0" * 32])
    ds.save_as(tmp_path / "jxl.dcm")
    with pytest.raises(DicomError, match=r"jxl\.dcm: .*MPEG2"):
        read_dicom(tmp_path / "jxl.dcm")
    (tmp_path / "text.dcm").write_text("not a dicom file")
    with pytest.raises(DicomError, match=r"text\.dcm: not a readable DICOM file"):
        read_dicom(tmp_path / "text.dcm")
    with pytest.raises(DicomError, match=r"gone\.dcm: DICOM file not found"):
        read_dicom(tmp_path / "gone.dcm")


# ---------------------------------------------------------------- through the loaders


def test_folder_and_manifest_accept_dcm_and_record_the_pipeline(tmp_path):
    root = tmp_path / "data" / "test"
    root.mkdir(parents=True)
    write_dicom(root / "a.dcm", (4095 - chest(12)), "MONOCHROME1", 12)
    (root / "a.txt").write_text("No acute cardiopulmonary process.")
    ds = load_dataset(f"folder:{tmp_path / 'data'}")
    image = ds.samples[0].load_image()
    assert image.mode == "L" and np.asarray(image)[15, 16] > np.asarray(image)[1, 1]
    assert ds.preprocessing["image"]["reader"] == "pydicom"
    assert open_image(ds.samples[0].image_path).tobytes() == image.tobytes()
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "image": "data/test/a.dcm", "report": "Normal chest."}\n')
    assert load_dataset(f"manifest:{manifest}").samples[0].load_image().tobytes() == image.tobytes()


def test_bad_dicom_in_a_folder_fails_naming_it_or_is_skipped(tmp_path):
    root = tmp_path / "test"
    root.mkdir()
    write_dicom(root / "good.dcm", chest(12), "MONOCHROME2", 12)
    write_dicom(root / "multi.dcm", np.zeros((2, 8, 8), np.uint8), "MONOCHROME2", 8, frames=2)
    for stem in ("good", "multi"):
        (root / f"{stem}.txt").write_text("Normal chest.")
    with pytest.raises(DatasetError, match=r"multi\.dcm: multi-frame DICOM"):
        load_dataset(f"folder:{tmp_path}")
    ds = load_dataset(f"folder:{tmp_path}", on_bad_sample="skip")
    assert [s.id for s in ds.samples] == ["good"] and "multi-frame" in ds.bad[0].reason
