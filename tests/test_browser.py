"""Headless Chromium opens report.html and leaderboard.html: no console errors, every image loaded,
model text with <script> / <img onerror> shows as text and runs nothing. Screenshots are kept.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
separated by NUL bytes on fds 3 and 4), stdlib only. Needs the Debian package ``chromium``.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from report_runs import disagreeing_ids, make_v2_run
from runfolders import XSS, make_run, toy_loader

from medbench.leaderboard import write_leaderboard
from medbench.report import write_report
from medbench.runrecord import load_record
from medbench.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: apt-get update && apt-get install -y chromium")

PROBE = """(() => ({
  title: document.title,
  xss: document.body.getAttribute('data-xss'),
  scripts: document.scripts.length,
  handlers: Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
  text: document.body.innerText,
}))()"""


class Chromium:
    """A tiny DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, profile: Path):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # move the child's ends above 10 so dup2 onto 3 and 4 cannot clobber one another
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def wire():  # in the child, before exec
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.log = open(profile.parent / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
             "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, pass_fds=(3, 4), preexec_fn=wire)
        os.close(child_in)
        os.close(child_out)
        self.write, self.read = to_chrome_w, from_chrome_r
        self.next_id, self.messages, self.events = 0, queue.Queue(), []
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = b""
        while chunk := os.read(self.read, 1 << 16):
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self.messages.put(json.loads(msg))

    def _next(self, deadline: float) -> dict:
        try:
            return self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("no answer from Chromium (see chromium.log beside the profile)") from None

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._next(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def open(self, path: Path, shot: Path, probe: str = PROBE) -> tuple[dict, list[str]]:
        """Load a file, return (probe result, console/log errors) and save a full-page screenshot."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method, session=s)
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=s)
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=s)
        self.wait_event("Page.loadEventFired")
        probe = self.call("Runtime.evaluate", {"expression": probe, "returnByValue": True}, session=s)["result"]["value"]
        height = int(self.call("Page.getLayoutMetrics", session=s)["cssContentSize"]["height"])
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": min(height, 16000), "deviceScaleFactor": 1, "mobile": False}, session=s)
        png = self.call("Page.captureScreenshot", {"format": "png"}, session=s)["data"]
        shot.write_bytes(base64.b64decode(png))
        errors = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev.get("method") == "Runtime.exceptionThrown":
                errors.append(json.dumps(p.get("exceptionDetails", {}))[:300])
            elif ev.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(json.dumps(p.get("args", []))[:300])
            elif ev.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(p["entry"].get("text", "")[:300])
        self.call("Target.closeTarget", {"targetId": target})
        return probe, errors

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (TimeoutError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.write)
        self.log.close()


@pytest.fixture
def chromium(tmp_path):
    browser = Chromium(tmp_path / "profile")
    yield browser
    browser.close()


def keep(shot: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)


def check_page(probe: dict, errors: list[str]) -> None:
    assert errors == [], errors
    assert probe["images"], "the page shows no images"
    broken = [i["alt"] for i in probe["images"] if not (i["complete"] and i["width"] > 0)]
    assert broken == [], f"images that did not load: {broken}"
    assert probe["scripts"] == 0 and probe["handlers"] == 0
    assert probe["xss"] is None and probe["title"] != "pwned"


def test_report_in_chromium(tmp_path, chromium):
    run = make_v2_run(tmp_path, "oracle", quality=0.9, report_text=XSS)
    probe, errors = chromium.open(write_report(run), tmp_path / "report.png")
    check_page(probe, errors)
    assert XSS.split(" No effusion")[0] in probe["text"]  # the payload is visible, as text
    assert "Sample gallery" in probe["text"] and "Provenance" in probe["text"]
    assert (tmp_path / "report.png").stat().st_size > 10_000
    keep(tmp_path / "report.png")


def test_leaderboard_in_chromium(tmp_path, chromium):
    store = Store(tmp_path / "s.sqlite")
    evil = 'evil<img src=x onerror="document.body.setAttribute(\'data-xss\',\'3\')">'
    for model, q, first in (("oracle", 0.9, 0), ("retrieval", 0.6, 0), ("random", 0.15, 0), (evil, 0.5, 100)):
        d = make_run(tmp_path, model, quality=q, first_id=first, run_id=f"run-{len(model)}-{q}")
        store.add_run(load_record(d), d)
        store.add_run(dict(load_record(d), run_id=f"old-{q}", provenance={"git_commit": "0ld0ld", "finished": "2024-12-01T00:00:00Z"}), d)
    html = [p for p in write_leaderboard(store, "joint_pairs", tmp_path / "lb", loader=toy_loader, n_perm=100, n_boot=100)
            if p.suffix == ".html"][0]
    probe, errors = chromium.open(html, tmp_path / "leaderboard.png")
    check_page(probe, errors)
    assert evil in probe["text"] and "≈ best" in probe["text"]
    keep(tmp_path / "leaderboard.png")


# What a reader sees in a joint_pairs report: per gallery card the label-set headers, the rows drawn
# as disagreeing (their computed colours), the memorization distances in page order, per-label tables.
JOINT_PROBE = """(() => {
  const h2 = Array.from(document.querySelectorAll('h2'));
  const after = (title) => { const h = h2.find(e => e.textContent.startsWith(title)); return h ? h.nextElementSibling : null; };
  const gallery = [];
  let el = after('Sample gallery');
  while (el && el.tagName !== 'H2') {
    el.querySelectorAll && el.querySelectorAll('section.sample').forEach(sec => {
      const rows = Array.from(sec.querySelectorAll('table.labels tbody tr'));
      gallery.push({
        id: sec.querySelector('.head code').textContent,
        headers: Array.from(sec.querySelectorAll('table.labels th')).map(th => th.textContent),
        disagree: rows.filter(r => r.classList.contains('disagree')).map(r => ({
          text: r.innerText, bg: getComputedStyle(r.cells[1]).backgroundColor, color: getComputedStyle(r.cells[1]).color})),
        agree_bg: rows.filter(r => !r.classList.contains('disagree')).map(r => getComputedStyle(r.cells[1]).backgroundColor),
      });
    });
    el = el.nextElementSibling;
  }
  const perLabel = h2.filter(h => h.textContent.startsWith('Per-label table')).map(h => {
    let t = h.nextElementSibling; while (t && t.tagName !== 'TABLE') t = t.nextElementSibling;
    const rows = t ? Array.from(t.querySelectorAll('tbody tr')) : [];
    return {title: h.textContent, rows: rows.length, empty_cells: rows.flatMap(r => Array.from(r.cells)).filter(c => !c.textContent.trim()).length,
            visible: t ? t.getBoundingClientRect().height > 20 : false};
  });
  return {
    gallery, perLabel,
    distances: Array.from(document.querySelectorAll('.neigh figure.gen .dist')).map(e => parseFloat(e.textContent)),
    neighbourImages: document.querySelectorAll('.neigh figure:not(.gen) img').length,
    images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
    scripts: document.scripts.length,
  };
})()"""


def check_joint_report(probe: dict, run: Path, expected: set[str] | None = None) -> None:
    broken = [i["alt"] for i in probe["images"] if not (i["complete"] and i["width"] > 0)]
    assert broken == [] and probe["scripts"] == 0
    cards = probe["gallery"]
    assert cards, "the gallery shows no sample"
    for c in cards:  # reference and generated labels, side by side
        assert "reference" in c["headers"] and any("image" in h for h in c["headers"]) and any("report" in h for h in c["headers"])
    marked = {c["id"] for c in cards if c["disagree"]}
    shown = {c["id"] for c in cards}
    expected = set(disagreeing_ids(run)) if expected is None else expected
    assert marked == expected & shown and marked
    red = {(d["bg"], d["color"]) for c in cards for d in c["disagree"]}
    assert red == {("rgb(254, 226, 226)", "rgb(185, 28, 28)")}  # the caption says red: it is
    assert all("✗" in d["text"] for c in cards for d in c["disagree"])
    assert "rgb(254, 226, 226)" not in {bg for c in cards for bg in c["agree_bg"]}
    d = probe["distances"]
    assert len(d) >= 3 and d == sorted(d)
    assert probe["perLabel"] and all(t["rows"] > 0 and t["empty_cells"] == 0 and t["visible"] for t in probe["perLabel"])


def test_joint_pairs_report_in_chromium(tmp_path, chromium):
    run = make_v2_run(tmp_path, "oracle", quality=0.9, n=16)
    probe, errors = chromium.open(write_report(run, gallery_size=16), tmp_path / "joint_pairs_report.png", JOINT_PROBE)
    assert errors == []
    check_joint_report(probe, run)
    assert probe["neighbourImages"] > 0
    keep(tmp_path / "joint_pairs_report.png")


@pytest.mark.slow
def test_real_joint_pairs_run_report_in_chromium(tmp_path, chromium, tiny_folder):
    """A real `medbench run --task joint_pairs` (retrieval on a small folder dataset): the report's labels
    come from what the run stored, and the disagreements it marks are those of the stored label rows."""
    import numpy as np
    from safetensors.numpy import load_file

    from medbench.cli import main

    out = tmp_path / "runs"
    assert main(["run", "--task", "joint_pairs", "--model", "retrieval", "--dataset", f"folder:{tiny_folder}", "--n", "10",
                 "--bootstrap", "20", "--out", str(out), "--store", ""]) == 0
    (run,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    stats = load_file(str(run / "stats" / "pair.consistency.safetensors"))
    ids = [row["id"] for row in map(json.loads, (run / "samples.jsonl").read_text().splitlines())]
    differ = (stats["gen_image"] == 1) != (stats["gen_report"] == 1)
    expected = {i for i, d, ok in zip(ids, differ.any(1), stats["gen_valid"]) if d and ok}
    if not expected:
        pytest.skip("retrieval's pairs agree on every label on this dataset: nothing to mark")
    probe, errors = chromium.open(write_report(run, gallery_size=10), tmp_path / "joint_pairs_real_report.png", JOINT_PROBE)
    assert errors == []
    check_joint_report(probe, run, expected)
    assert np.all(np.diff(probe["distances"]) >= 0)
    keep(tmp_path / "joint_pairs_real_report.png")
