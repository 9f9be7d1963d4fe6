"""IU X-Ray (Open-i) through the section protocol: XXXX placeholders, case, recorded protocol."""
from __future__ import annotations

from layout_writers import write_image

from medbench.data.resolve import load_dataset

XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="INDICATION">XXXX-year-old with cough.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation>{images}</eCitation>
"""


def write_study(root, n, findings, impression, images):
    (root / "ecgen-radiology").mkdir(parents=True, exist_ok=True)
    tags = "".join(f'<parentImage id="{i}"/>' for i in images)
    (root / "ecgen-radiology" / f"{n}.xml").write_text(XML.format(n=n, findings=findings, impression=impression, images=tags))
    for i in images:
        write_image(root / "NLMCXR_png" / f"{i}.png")


def test_iu_deid_case_and_protocol_record(tmp_path):
    write_study(tmp_path, 1, "Heart size normal. XXXX sternotomy wires.", "No acute XXXX abnormality.", ["CXR1_1_IM-0001-3001"])
    write_study(tmp_path, 2, "XXXX XXXX.", "", ["CXR2_IM-0652-1001"])
    kept = load_dataset(f"iu-xray:{tmp_path}", on_bad_sample="skip")
    assert [s.report for s in kept.samples] == [
        "Heart size normal. XXXX sternotomy wires. No acute XXXX abnormality.", "XXXX XXXX."]
    assert kept.preprocessing["report"]["protocol"] == "findings+impression"
    dropped = load_dataset(f"iu-xray:{tmp_path}", {"deid": "drop", "case": "lower"}, on_bad_sample="skip")
    assert [s.report for s in dropped.samples] == ["heart size normal. sternotomy wires. no acute abnormality."]
    assert [b.reason for b in dropped.bad] == ["nothing left of the FINDINGS+IMPRESSION text after deid=drop"]
    assert dropped.preprocessing["report"]["protocol"] == "findings+impression|deid=drop|lower"
    impression = load_dataset(f"iu-xray:{tmp_path}", {"section": "impression"}, on_bad_sample="skip")
    assert [s.id for s in impression.samples] == ["CXR1_1_IM-0001-3001"]
    assert [b.reason for b in impression.bad] == ["empty report: no IMPRESSION text"]
