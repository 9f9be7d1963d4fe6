"""The ``file-datasets`` entry point: public collections read from the user's local copies.

``folder:PATH`` and ``manifest:FILE`` are resolved by `medbench.data.resolve` (they take a path,
not a name). This plugin registers named datasets whose files you download yourself (licences
forbid redistribution; nothing is ever downloaded here), each used as ``--dataset NAME:PATH``:

    iu-xray        IU X-Ray / Open-i: ecgen-radiology/*.xml + the PNGs (NLMCXR_png)      (below)
    mimic-cxr      MIMIC-CXR DICOM or MIMIC-CXR-JPG + the CSVs + reports  (`medbench.data.mimic_cxr`)
    mimic-cxr-jpg  the same, JPG images
    chexpert       CheXpert v1.0 CSVs + images, no reports                (`medbench.data.chexpert`)
    chexpert-plus  CheXpert Plus CSV with report sections
    pathgen        PathGen-1.6M tiles + captions                          (`medbench.data.pathgen`)

Each declares its options (``medbench list --options NAME``); reports are cut by the section
protocol of `medbench.data.sections`. What cannot be read is recorded in ``dataset.bad``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from medbench import hookimpl
from medbench.data import sections
from medbench.data.base import BadSample, Dataset
from medbench.data.local_copy import PATH, open_root
from medbench.data.validate import DatasetError
from medbench.options import Option
from medbench.records import Sample
from medbench.registry import DatasetSpec

IU_OPTIONS = (PATH, Option("images", str, None, "folder of the PNGs (default: PATH/NLMCXR_png, PATH/images or PATH)"),
              *sections.OPTIONS)


def _lazy(module: str, function: str):
    def load(options=None):
        import importlib

        return getattr(importlib.import_module(f"medbench.data.{module}"), function)(options)
    return load


def _options(module: str, name: str = "OPTIONS"):
    import importlib

    return getattr(importlib.import_module(f"medbench.data.{module}"), name)


@hookimpl
def medbench_datasets():
    return [
        DatasetSpec("iu-xray", load_iu_xray, "IU X-Ray (Open-i) from a local copy: iu-xray:PATH (not bundled)", IU_OPTIONS),
        DatasetSpec("mimic-cxr", _lazy("mimic_cxr", "load_mimic_cxr"),
                    "MIMIC-CXR (DICOM) or MIMIC-CXR-JPG from a local copy: mimic-cxr:PATH (not bundled)",
                    _options("mimic_cxr")),
        DatasetSpec("mimic-cxr-jpg", _lazy("mimic_cxr", "load_mimic_cxr_jpg"),
                    "MIMIC-CXR-JPG from a local copy: mimic-cxr-jpg:PATH (not bundled)", _options("mimic_cxr")),
        DatasetSpec("chexpert", _lazy("chexpert", "load_chexpert"),
                    "CheXpert v1.0 from a local copy (labels, no reports): chexpert:PATH (not bundled)",
                    _options("chexpert")),
        DatasetSpec("chexpert-plus", _lazy("chexpert", "load_chexpert_plus"),
                    "CheXpert Plus from a local copy (report sections): chexpert-plus:PATH (not bundled)",
                    _options("chexpert", "PLUS_OPTIONS")),
        DatasetSpec("pathgen", _lazy("pathgen", "load_pathgen"),
                    "PathGen-1.6M tiles + captions from a local copy: pathgen:PATH (not bundled)", _options("pathgen")),
    ]


# ---------------------------------------------------------------------------- IU X-Ray / Open-i


def load_iu_xray(options: dict | None = None) -> Dataset:
    """One Sample per parentImage; patient = the study's uId (IU X-Ray has no patient ids); split test.

    The XML's FINDINGS / IMPRESSION AbstractTexts are the sections; the protocol options choose and
    clean them (``deid=drop`` removes IU's ``XXXX`` placeholders)."""
    opts, root = open_root(options, "iu-xray", IU_OPTIONS, "ecgen-radiology/*.xml and the NLMCXR_png images")
    protocol = sections.ReportProtocol.from_options(opts)
    xml_dir = root / "ecgen-radiology" if (root / "ecgen-radiology").is_dir() else root
    images = Path(opts["images"]) if opts["images"] else next(
        (d for d in (root / "NLMCXR_png", root / "images") if d.is_dir()), root)
    files = sorted(xml_dir.glob("*.xml"))
    if not files:
        raise DatasetError(f"iu-xray: no *.xml reports in {xml_dir}")
    samples, bad = [], []
    for xml_file in files:
        try:
            tree = ET.parse(xml_file).getroot()
        except ET.ParseError as e:
            bad.append(BadSample(xml_file.stem, str(xml_file), f"malformed XML: {e}"))
            continue
        uid = (tree.find("uId").get("id") if tree.find("uId") is not None else "") or xml_file.stem
        text = {(a.get("Label") or "").lower(): (a.text or "").strip() for a in tree.iter("AbstractText")}
        full = "\n".join(f"{k.upper()}: {v}" for k, v in text.items() if v)
        image_ids = [im.get("id") for im in tree.iter("parentImage") if im.get("id")]
        if not image_ids:
            bad.append(BadSample(uid, str(xml_file), "study lists no parentImage"))
            continue
        if not protocol.choose(full, text):
            wanted = protocol.section.upper().replace("+", " or ")
            bad.extend(BadSample(i, str(xml_file), f"empty report: no {wanted} text") for i in image_ids)
            continue
        report, problem = protocol.apply(full, text)
        if problem:
            bad.extend(BadSample(i, str(xml_file), problem) for i in image_ids)
            continue
        for image_id in image_ids:
            samples.append(Sample(id=image_id, patient_id=uid, domain="cxr", split="test",
                                  image_path=images / f"{image_id}.png", report=report))
    return Dataset("iu-xray", "cxr", samples, source=f"iu-xray:{root.resolve()}", bad=bad,
                   preprocessing={"report": protocol.describe()})
