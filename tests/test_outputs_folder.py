"""The run's outputs folder and content identity: safe file stems, the resume log (torn lines,
sha256 re-verification), model outputs refused before scoring, and run ids that follow the
contents of --model-path weights rather than their path."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from medbench.identity import weights_digest
from medbench.outputs import OutputError, OutputsFolder, check_output
from medbench.records import Output, Request, Sample
from medbench.safe_names import file_stem, inside, is_plain


@pytest.mark.parametrize("sample_id", ["../../x", "/abs/id", "a/b", "a\\b", "..", ".", ".hidden", "~x", "new\nline", "nul\x00",
                                       "tab\tx", "x" * 500, "é" * 100, "trailing.", "trailing ", "C:x", "a|b", "\u2028"])
def test_unsafe_ids_get_a_distinct_plain_stem(sample_id, tmp_path):
    stem = file_stem(sample_id)
    assert stem != sample_id and re.fullmatch(r"~[A-Za-z0-9._-]{0,60}~[0-9a-f]{16}", stem) and not is_plain(stem)
    assert len(stem.encode()) <= 120 and inside(tmp_path, tmp_path / f"{stem}.png")
    (tmp_path / f"{stem}.png").write_bytes(b"ok")  # a real file name on this file system
    assert file_stem(sample_id + "!") != stem  # the hash keeps different ids apart


@pytest.mark.parametrize("sample_id", ["cxr-p01-s0", "with space", "ünï", "a;b", "-rf", "x.y", "CXR1_1"])
def test_safe_ids_are_their_own_stem(sample_id):
    assert file_stem(sample_id) == sample_id


def _sample(sid="s1"):
    return Sample(id=sid, patient_id="p", domain="cxr", split="test", image_path=None, report="r")


def _pair(sid="s1"):
    return Output(sid, image=Image.new("L", (8, 8), 7), report="No effusion.")


def test_torn_last_line_is_ignored_and_never_glued(tmp_path):
    folder = OutputsFolder(tmp_path / "outputs")
    folder.write(_pair("a"))
    log = tmp_path / "outputs" / "index.rank0.jsonl"
    log.write_bytes(log.read_bytes() + b'{"id": "b", "image_sha')  # killed mid-line
    assert set(folder.done()) == {"a"}
    folder.write(_pair("b"))
    assert set(folder.done()) == {"a", "b"}
    assert log.read_text().splitlines()[-1].startswith('{"id": "b"')


def test_an_overlong_log_line_is_skipped_not_read_whole(tmp_path):
    folder = OutputsFolder(tmp_path / "outputs")
    log = tmp_path / "outputs" / "index.rank0.jsonl"
    log.write_bytes(b"x" * (1 << 20) + b"\n")
    folder.write(_pair("a"))
    assert set(folder.done()) == {"a"}


@pytest.mark.parametrize("tamper,why", [
    (lambda p: p.write_bytes(p.read_bytes()[:10]), "changed since it was written"),
    (lambda p: Image.new("L", (8, 8), 200).save(p), "changed since it was written"),
    (lambda p: p.unlink(), "file not found"),
    (lambda p: (p.unlink(), p.mkdir()), "is a directory"),
])
def test_verified_names_every_changed_output(tamper, why, tmp_path):
    folder = OutputsFolder(tmp_path / "outputs")
    for sid in ("a", "b"):
        folder.write(_pair(sid))
    tamper(folder.path("b", "image"))
    good, stale = folder.verified("prompt->pair")
    assert set(good) == {"a"} and why in stale["b"] and str(folder.path("b", "image")) in stale["b"]
    with pytest.raises(OutputError):
        folder.read(_sample("b"), "prompt->pair", folder.done()["b"])


def test_read_returns_the_hashes_of_what_was_scored(tmp_path):
    folder = OutputsFolder(tmp_path / "outputs")
    entry = folder.write(_pair("a"))
    out, hashes = folder.read(_sample("a"), "prompt->pair", entry)
    assert out.report == "No effusion." and hashes == {"image": entry["image_sha256"], "report": entry["report_sha256"]}


REQ = Request(kind="prompt->pair", sample_id="s1", seed=0, domain="cxr", prompt="x")


@pytest.mark.parametrize("output,problem", [
    (Output("s1", image=Image.fromarray(np.zeros((4, 4), np.uint16)), report="r"), "mode 'I;16'"),
    (Output("s1", image=Image.new("CMYK", (4, 4)), report="r"), "mode 'CMYK'"),
    (Output("s1", image=Image.new("F", (4, 4)), report="r"), "mode 'F'"),
    (Output("s1", image=Image.new("L", (4, 4)), report="x" * 20_001), "20001 characters long (limit 20000)"),
    (Output("s1", image=Image.new("L", (4, 4)), report="a\x00b"), "NUL characters"),
    (Output("s1", image=np.zeros((4, 4), np.float32), report="r"), "must be uint8"),
])
def test_model_outputs_that_would_be_silently_converted_are_refused(output, problem):
    with pytest.raises(OutputError) as e:
        check_output(output, REQ)
    assert "sample 's1'" in str(e.value) and problem in str(e.value)


def test_run_id_follows_weight_contents_not_their_path(tmp_path):
    from medbench.runner import RunConfig, run_id
    from medbench.tasks import load_task

    weights = tmp_path / "ckpt"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"weights v1")
    (weights / "config.json").write_text(json.dumps({"d": 8}))
    cfg = RunConfig(task=load_task("i2t"), model="medim", dataset="cxr-phantom", out=tmp_path / "runs", seed=0, n=4,
                    protocol="coco", model_path=weights)

    def rid(path):
        c = dataclasses.replace(cfg, model_path=path)
        c.model_content = weights_digest(path)
        return run_id(c)

    first = rid(weights)
    moved = shutil.copytree(weights, tmp_path / "elsewhere" / "ckpt")
    assert rid(moved) == first  # same bytes under another path: the same run
    (moved / "model.safetensors").write_bytes(b"weights v2")
    assert rid(moved) != first  # retrained weights: a new run
    digest = weights_digest(moved)
    assert set(digest["files"]) == {"model.safetensors", "config.json"}


def test_meteor_heap_is_sized_from_the_longest_segment():
    from medbench.metrics.java_meteor import MAX_SEGMENT_CHARS, MeteorJVM, heap_mb

    assert heap_mb(10) == heap_mb(MAX_SEGMENT_CHARS) == 2048  # pycocoevalcap's -Xmx2G up to the report cap
    half_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (2 << 20)
    assert heap_mb(MAX_SEGMENT_CHARS + 1) == max(2048, min(4096, half_ram))  # 2 GB more per 20,000, at most half the RAM
    assert heap_mb(60_000) == max(2048, min(6144, half_ram))
    jvm = MeteorJVM(max_chars=50_000)
    try:
        assert jvm.command[2] in (f"-Xmx{heap_mb(50_000)}M", "-Xmx2G")
        with pytest.raises(ValueError, match="50001 characters"):
            jvm.stats_line("x" * 50_001, ["no effusion"])
    finally:
        jvm.close()
    default = MeteorJVM()
    try:
        assert default.command == ["java", "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"]
    finally:
        default.close()


def test_case_collisions_are_found_and_this_file_system_is_probed(tmp_path):
    from medbench.safe_names import case_collisions, case_insensitive

    assert case_collisions(["A-1", "a-1", "b", "../x", "../X"]) == [["A-1", "a-1"]]  # encoded stems differ by hash
    (tmp_path / "probe").write_text("x")
    assert case_insensitive(tmp_path) == (tmp_path / "PROBE").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "probe"]  # the probe file is removed
