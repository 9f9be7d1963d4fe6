"""Report preprocessing protocol: section extraction, de-identification placeholders, case, tokens."""
from __future__ import annotations

import pytest

from medbench.data.sections import ReportProtocol, heading_name, last_paragraph, split_sections

MIMIC = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 COMPARISON:  ___

 FINDINGS:

 PA and lateral views of the chest.  Heart size is normal.
 No focal consolidation, effusion, or pneumothorax.

 IMPRESSION:

 No acute cardiopulmonary process.  Dr. ___ was notified at ___.
"""
IU = "The heart is normal in size. XXXX sternotomy wires. No XXXX effusion."


def test_split_sections_like_the_mimic_parser():
    parts = split_sections(MIMIC)
    assert list(parts) == ["preamble", "examination", "indication", "comparison", "findings", "impression"]
    assert parts["preamble"] == "FINAL REPORT"
    assert parts["findings"].startswith("PA and lateral views") and parts["findings"].endswith("pneumothorax.")


@pytest.mark.parametrize("raw, name", [("IMPRESSIONS", "impression"), ("CONCLUSION", "impression"),
                                       ("FINDINGS AND IMPRESSION", "impression"), ("FINDING", "findings"),
                                       ("IMPRESION", "impression"), ("FINDNGS", "findings"),
                                       ("REASON FOR EXAMINATION", "indication"), ("WET READ", "wet read")])
def test_heading_names_are_normalised(raw, name):
    assert heading_name(raw) == name


def test_inline_colon_is_not_a_heading_and_repeats_join():
    parts = split_sections("FINDINGS: Tube tip: 3 cm above carina.\nIMPRESSION: One.\nIMPRESSION: Two.")
    assert parts == {"findings": "Tube tip: 3 cm above carina.", "impression": "One. Two."}


def test_protocol_sections_and_names():
    assert ReportProtocol().apply(MIMIC)[0] == ("PA and lateral views of the chest. Heart size is normal. No focal "
                                                "consolidation, effusion, or pneumothorax. No acute cardiopulmonary "
                                                "process. Dr. ___ was notified at ___.")
    assert ReportProtocol("impression").apply(MIMIC)[0] == "No acute cardiopulmonary process. Dr. ___ was notified at ___."
    assert ReportProtocol("full").apply("A.\n\nB.")[0] == "A. B."
    assert ReportProtocol().name == "findings+impression"
    assert ReportProtocol("findings", deid="keep").name == "findings"
    assert ReportProtocol("impression", deid="drop", case="lower", tokens="words").name == "impression|deid=drop|lower|words"
    assert ReportProtocol("findings", fallback="last_paragraph").describe() == {
        "protocol": "findings|fallback=last_paragraph", "section": "findings", "fallback": "last_paragraph",
        "deid": "keep", "case": "keep", "tokens": "keep"}


def test_deidentification_placeholders():
    drop = ReportProtocol("impression", deid="drop").apply(MIMIC)[0]
    assert drop == "No acute cardiopulmonary process. Dr. was notified at."
    assert ReportProtocol("impression", deid="mask").apply(MIMIC)[0].endswith("Dr. [deid] was notified at [deid].")
    assert ReportProtocol("full", deid="drop").apply(IU)[0] == "The heart is normal in size. sternotomy wires. No effusion."
    assert ReportProtocol("full", deid="keep").apply(IU)[0] == IU
    assert ReportProtocol("full", deid="drop").apply("XXXX XXXX.") == (None, "nothing left of the FULL text after deid=drop")
    assert ReportProtocol("full", deid="drop").apply("Xray of the BOX.")[0] == "Xray of the BOX."  # not a placeholder


def test_case_and_tokens():
    assert ReportProtocol("full", case="lower").apply(IU)[0] == IU.lower()
    words = ReportProtocol("impression", tokens="words", deid="mask").apply(MIMIC)[0]
    assert words == "no acute cardiopulmonary process . dr . [deid] was notified at [deid] ."


def test_missing_section_and_last_paragraph_fallback():
    no_headings = "Heart size normal.\n\nNo effusion or pneumothorax."
    assert ReportProtocol("findings").apply(no_headings) == (None, "no FINDINGS section in the report")
    assert ReportProtocol("findings", fallback="last_paragraph").apply(no_headings)[0] == "No effusion or pneumothorax."
    assert last_paragraph(no_headings) == "No effusion or pneumothorax."
    only_impression = "IMPRESSION: Normal.\n\nSomething else."
    assert ReportProtocol("findings", fallback="last_paragraph").apply(only_impression)[1]  # other section present


def test_invalid_values_are_refused():
    with pytest.raises(ValueError, match="must be one of findings"):
        ReportProtocol("finding")
    with pytest.raises(ValueError, match="keep, drop, mask"):
        ReportProtocol(deid="remove")
