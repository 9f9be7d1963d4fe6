"""METEOR 1.5 (Java) as pycocoevalcap runs it: one persistent JVM, and its aggregate in Python.

pycocoevalcap starts ``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm`` and, per segment,
sends ``SCORE ||| ref ||| hyp`` to get a line of 23 *sufficient statistics*; ``EVAL ||| s1 ||| s2 ...``
then returns each segment's score and the corpus score, which the jar computes from the *summed*
statistics (MeteorStats.addStats + MeteorScorer.computeMetrics). We keep each segment's statistics
as a per-sample row and redo that aggregate in Python (`meteor_from_stats`), so bootstrap resamples
need no JVM::

    jvm = MeteorJVM()                       # starts the JVM (~20 s to load the paraphrase table)
    row = parse_stats(jvm.stats_line("no pleural effusion", ["no effusion"]))
    score = meteor_from_stats(np.stack([row, ...]))
    jvm.close()
"""
from __future__ import annotations

import math
import os
import select
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np

from medbench.progress import note

# Meteor 1.5, language "en", default task "rank": alpha, beta, gamma, delta and the module weights
# (exact, stem, synonym, paraphrase) -- checked against the jar's own segment scores in the tests.
ALPHA, BETA, GAMMA, DELTA = 0.85, 0.20, 0.60, 0.75
MODULE_WEIGHTS = (1.0, 0.6, 0.8, 0.6)
N_MODULES = 4
STATS_LENGTH = 4 + 4 * N_MODULES + 3  # tstLen refLen tstFunc refFunc, per module (tc rc tf rf), chunks, tstWM refWM


def meteor_dir() -> Path:
    import pycocoevalcap.meteor.meteor as reference

    return Path(reference.__file__).resolve().parent


def java_missing_reason() -> str | None:
    if shutil.which("java") is None:
        return "METEOR 1.5 and the PTB tokenizer need a Java runtime: install one (e.g. `apt-get install default-jre-headless`)"
    if not (meteor_dir() / "meteor-1.5.jar").is_file():
        return f"meteor-1.5.jar is missing from {meteor_dir()}: reinstall pycocoevalcap"
    return None


MAX_SEGMENT_CHARS = 20_000  # medbench's report cap (medbench.data.validate.MAX_REPORT_CHARS)
STARTUP_S = 600.0  # loading the paraphrase table: ~20 s on an idle core, minutes on a busy machine
SEGMENT_TIMEOUT_S = 300.0  # one segment's answer (measured: 5,000 characters of one repeated phrase, 7 s; 10,000, > 10 min)


def heap_mb(max_chars: int) -> int:
    """JVM heap for segments of up to `max_chars` characters: pycocoevalcap's 2 GB up to the report
    cap (20,000 characters), then 2 GB per further 20,000, never more than half the machine's memory."""
    want = 2048 * max(1, math.ceil(max_chars / MAX_SEGMENT_CHARS))
    try:
        half = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (2 << 20)
    except (ValueError, OSError, AttributeError):
        half = want
    return int(max(2048, min(want, half)))


class MeteorJVM:
    """One ``meteor-1.5.jar -stdio`` process, started with exactly pycocoevalcap's command line
    (``-Xmx2G``) for segments up to the report cap; a larger `max_chars` gets a larger heap
    (`heap_mb`). A segment longer than `max_chars` is refused before it reaches the JVM."""

    def __init__(self, max_chars: int = MAX_SEGMENT_CHARS, timeout: float = SEGMENT_TIMEOUT_S):
        reason = java_missing_reason()
        if reason:
            raise RuntimeError(reason)
        self.max_chars, self.timeout, self._answered = int(max_chars), float(timeout), False
        heap = heap_mb(self.max_chars)
        xmx = "-Xmx2G" if heap == 2048 else f"-Xmx{heap}M"
        self.command = ["java", "-jar", xmx, "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"]
        self._stderr = tempfile.TemporaryFile()
        note("starting the METEOR 1.5 JVM (pycocoevalcap) ...")
        self.process = subprocess.Popen(self.command, cwd=meteor_dir(), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._stderr)
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop, self.process, self._stderr)

    def _ask(self, line: str) -> str:
        """Send one line, read one line (the caller holds the lock)."""
        try:
            self.process.stdin.write((line + "\n").encode())
            self.process.stdin.flush()
            wait = self.timeout + (0 if self._answered else STARTUP_S)  # the first answer waits for the JVM to load
            ready, _, _ = select.select([self.process.stdout], [], [], wait)
            if not ready:  # a pathological segment (e.g. one phrase repeated for 10,000 characters) can take hours
                self.process.kill()
                self.process.wait()
                raise TimeoutError(f"the METEOR JVM gave no answer within {self.timeout:g} s for a segment of "
                                   f"{len(line)} characters")
            answer = self.process.stdout.readline().decode()
            self._answered = True
        except (BrokenPipeError, ValueError):
            answer = ""
        if not answer:
            self._stderr.seek(0)
            detail = self._stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the METEOR JVM ({' '.join(self.command)}) stopped answering: {detail or 'no stderr'}")
        return answer.strip()

    def stats_line(self, hypothesis: str, references: list[str]) -> str:
        """The jar's statistics line for one segment (pycocoevalcap's Meteor._stat, verbatim input)."""
        longest = max([len(hypothesis), *map(len, references)])
        if longest > self.max_chars:
            raise ValueError(f"METEOR segment of {longest} characters is longer than this JVM accepts "
                             f"({self.max_chars}); reports are capped before scoring")
        hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
        with self._lock:
            return self._ask(" ||| ".join(("SCORE", " ||| ".join(references), hypothesis)))

    def evaluate(self, stats_lines: list[str]) -> tuple[list[float], float]:
        """The jar's own segment scores and aggregate for statistics lines (used to check our aggregate)."""
        with self._lock:
            self.process.stdin.write(("EVAL ||| " + " ||| ".join(stats_lines) + "\n").encode())
            self.process.stdin.flush()
            segments = [float(self.process.stdout.readline().strip()) for _ in stats_lines]
            return segments, float(self.process.stdout.readline().strip())

    def close(self) -> None:
        self._finalizer()


_SPARE: list[MeteorJVM] = []  # a JVM started ahead of need (start_spare), taken by the next `take`


def start_spare() -> None:
    """Start a default JVM now, so that it loads while other work runs (the runner calls this before generation);
    the next `take()` returns it. Does nothing without Java (the family then reports why)."""
    if not _SPARE and java_missing_reason() is None:
        _SPARE.append(MeteorJVM())


def take() -> MeteorJVM:
    """The spare JVM if one was started, else a new one."""
    return _SPARE.pop() if _SPARE else MeteorJVM()


def _stop(process: subprocess.Popen, stderr) -> None:
    try:
        process.stdin.close()
    except OSError:
        pass
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    stderr.close()


def parse_stats(line: str) -> np.ndarray:
    values = np.array([float(v) for v in line.split()], dtype=np.float64)
    if values.shape != (STATS_LENGTH,):
        raise ValueError(f"METEOR statistics line has {values.size} fields, expected {STATS_LENGTH}: {line!r}")
    return values


def _div(a: float, b: float) -> float:
    """Java double division (x/0 is +-inf, 0/0 is NaN)."""
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _score(tl, rl, tf, rf, tc_m, rc_m, tf_m, rf_m, chunks, twm, rwm) -> float:
    """MeteorScorer.computeMetrics, operation for operation."""
    t_len_w = (DELTA * (tl - tf)) + ((1.0 - DELTA) * tf)
    r_len_w = (DELTA * (rl - rf)) + ((1.0 - DELTA) * rf)
    t_match_w = r_match_w = 0.0
    for i in range(N_MODULES):
        t_match_w += tc_m[i] * MODULE_WEIGHTS[i] * DELTA
    for i in range(N_MODULES):
        r_match_w += rc_m[i] * MODULE_WEIGHTS[i] * DELTA
    for i in range(N_MODULES):
        t_match_w += tf_m[i] * MODULE_WEIGHTS[i] * (1.0 - DELTA)
    for i in range(N_MODULES):
        r_match_w += rf_m[i] * MODULE_WEIGHTS[i] * (1.0 - DELTA)
    precision, recall = _div(t_match_w, t_len_w), _div(r_match_w, r_len_w)
    f_mean = _div(1.0, _div(1.0 - ALPHA, precision) + _div(ALPHA, recall))
    t_total = sum(tc_m[i] + tf_m[i] for i in range(N_MODULES))
    r_total = sum(rc_m[i] + rf_m[i] for i in range(N_MODULES))
    if t_total == tl and r_total == rl and chunks == 1:
        frag = 0.0
    else:
        frag = _div(chunks, (twm + rwm) / 2)
    penalty = GAMMA * (math.nan if math.isnan(frag) else math.pow(frag, BETA))
    score = f_mean * (1.0 - penalty)
    return 0.0 if math.isnan(score) else max(score, 0.0)


def _fields(row) -> tuple:
    m = row[4:4 + 4 * N_MODULES].reshape(N_MODULES, 4)
    return (row[0], row[1], row[2], row[3], m[:, 0], m[:, 1], m[:, 2], m[:, 3],
            row[-3], row[-2], row[-1])


def segment_score(row: np.ndarray) -> float:
    """The jar's score of one segment from its statistics row."""
    return _score(*(_fields(np.asarray(row, dtype=np.float64))))


def meteor_from_stats(rows: np.ndarray) -> float:
    """The jar's corpus score: statistics summed over segments (MeteorStats.addStats), then scored.

    addStats adds a segment's chunks only when it is not a perfect match (all words matched in one
    chunk); every other statistic is summed as is.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, STATS_LENGTH)
    m = rows[:, 4:4 + 4 * N_MODULES].reshape(-1, N_MODULES, 4)
    t_total = m[:, :, 0].sum(1) + m[:, :, 2].sum(1)
    r_total = m[:, :, 1].sum(1) + m[:, :, 3].sum(1)
    perfect = (t_total == rows[:, 0]) & (r_total == rows[:, 1]) & (rows[:, -3] == 1)
    summed = rows.sum(0)
    summed[-3] = rows[~perfect, -3].sum()
    return segment_score(summed)


def meteor_from_weighted(rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """`meteor_from_stats` of every resample given as a (B, n) row-weight matrix (bootstrap fast path)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, STATS_LENGTH)
    m = rows[:, 4:4 + 4 * N_MODULES].reshape(-1, N_MODULES, 4)
    t_total = m[:, :, 0].sum(1) + m[:, :, 2].sum(1)
    r_total = m[:, :, 1].sum(1) + m[:, :, 3].sum(1)
    perfect = (t_total == rows[:, 0]) & (r_total == rows[:, 1]) & (rows[:, -3] == 1)
    summed = w @ rows
    summed[:, -3] = w[:, ~perfect] @ rows[~perfect, -3]
    return np.array([segment_score(s) for s in summed])
