"""path-phantom: SYNTHETIC H&E-like tiles with descriptive pathology reports. Not clinical data.

Colour comes from Beer-Lambert mixing of haematoxylin (nuclei, purple-blue) and eosin (stroma and
cytoplasm, pink) concentration maps with the Ruifrok-Johnston stain vectors.

Attributes per tile: tissue (tumor, normal glandular, stroma, lymphoid), cellularity (low/high),
nuclear pleomorphism (mild/moderate/marked), mitoses, necrosis (pale acellular eosinophilic areas
with nuclear debris), inflammation (clusters of small dark round lymphocytes).

Labels (1 positive, 0 negated, -1 uncertain, absent = not mentioned), exactly recoverable from the
report by `medbench.labelers.path_attributes.PathAttributeLabeler`:
    Tumor               1 tumor tile, 0 otherwise (always mentioned)
    High Cellularity    1 high, 0 low (always mentioned)
    Marked Pleomorphism 1 marked, 0 mild or moderate (always mentioned; the level is in attributes)
    Mitoses             1 / 0 / -1 (uncertain: a single figure is drawn)
    Necrosis            1 / 0 / -1 (uncertain: a small focus is drawn)
    Inflammation        1 / 0, or absent (not mentioned; always absent for lymphoid tissue)
"""
from __future__ import annotations

import numpy as np

from medbench.data.phantom.cxr import grid, smooth_noise, soft

OBSERVATIONS = ("Tumor", "High Cellularity", "Marked Pleomorphism", "Mitoses", "Necrosis", "Inflammation")
TISSUES = ("tumor", "normal glandular", "stroma", "lymphoid")

# ---- report phrasings (one attribute per sentence) ----
PHRASES = {
    "tissue": {
        "tumor": ["Sections show invasive carcinoma composed of sheets of atypical epithelial cells.",
                  "The tile shows malignant tumor growing in solid sheets.", "Infiltrating carcinoma is present."],
        "normal glandular": ["Sections show benign glandular tissue with preserved architecture.",
                             "Normal glandular epithelium is seen.", "The tile shows unremarkable glands within stroma."],
        "stroma": ["The tile consists of fibrous stroma.", "Sections show collagenous stroma."],
        "lymphoid": ["Sections show benign lymphoid tissue.", "The tile shows dense lymphoid tissue with small round nuclei."],
    },
    "Tumor": {0: ["No tumor is identified.", "Negative for malignancy.", "There is no evidence of carcinoma."]},
    "High Cellularity": {1: ["Cellularity is high.", "The tissue is highly cellular.", "Hypercellular tissue."],
                         0: ["Cellularity is low.", "The tissue is of low cellularity.", "The tissue is hypocellular."]},
    "Marked Pleomorphism": {
        "marked": ["Nuclei show marked pleomorphism.", "There is marked nuclear pleomorphism.",
                   "Marked nuclear atypia with pleomorphic nuclei."],
        "moderate": ["Nuclei show moderate pleomorphism.", "There is moderate nuclear pleomorphism."],
        "mild": ["Nuclei are uniform with mild pleomorphism.", "There is only mild nuclear pleomorphism.",
                 "Nuclear pleomorphism is mild."],
    },
    "Mitoses": {1: ["Mitotic figures are readily identified.", "Numerous mitoses are present.", "Frequent mitotic figures are seen."],
                0: ["No mitotic figures are seen.", "Mitoses are absent.", "There are no mitoses."],
                -1: ["Possible rare mitotic figures are seen.", "Cannot exclude rare mitotic figures."]},
    "Necrosis": {1: ["Areas of coagulative necrosis are present.", "There is necrosis with karyorrhectic debris.", "Necrosis is present."],
                 0: ["No necrosis is seen.", "Necrosis is absent.", "There is no necrosis."],
                 -1: ["Possible focal necrosis.", "Cannot exclude focal necrosis."]},
    "Inflammation": {1: ["A patchy lymphocytic infiltrate is present.", "There is chronic inflammation with clusters of lymphocytes.",
                         "Scattered aggregates of inflammatory cells are seen."],
                     0: ["No significant inflammation.", "Inflammation is absent.", "There is no inflammatory infiltrate."]},
}
PROMPT_HEADS = ["H&E tile of", "H&E-stained tile of", "Histology tile of"]
PROMPT_TISSUE = {"tumor": "tumor", "normal glandular": "normal glandular tissue", "stroma": "stroma", "lymphoid": "lymphoid tissue"}
UNCERTAIN_P = 0.07

# Ruifrok & Johnston optical-density vectors (R, G, B)
H_VEC = np.array([0.65, 0.70, 0.29], np.float32)
E_VEC = np.array([0.07, 0.99, 0.11], np.float32)


# ---------------------------------------------------------------- sampling
def sample_patient(rng: np.random.Generator, n_studies: int) -> list[dict]:
    """Tiles of one specimen: a tumor patient's tiles share its grade and necrosis tendency."""
    cancer = rng.random() < 0.5
    grade = str(rng.choice(["mild", "moderate", "marked"], p=[0.15, 0.4, 0.45]))
    p_necrosis = 0.55 if grade == "marked" else 0.25
    inflamed = rng.random() < 0.35
    specs = []
    for _ in range(n_studies):
        if cancer and rng.random() < 0.75:
            tissue = "tumor"
        else:
            tissue = str(rng.choice(["normal glandular", "stroma", "lymphoid"], p=[0.45, 0.3, 0.25]))
        tumor = tissue == "tumor"
        a = {"tissue": tissue,
             "cellularity": "high" if rng.random() < {"tumor": 0.8, "normal glandular": 0.35, "stroma": 0.1, "lymphoid": 1.0}[tissue] else "low",
             "pleomorphism": grade if tumor else "mild"}
        for name, p in (("Mitoses", (0.75 if grade == "marked" else 0.45) if tumor else 0.04), ("Necrosis", p_necrosis if tumor else 0.0)):
            u = rng.random()
            a[name] = 1 if u < p else -1 if u < p + UNCERTAIN_P else 0
        if tissue != "lymphoid":
            a["Inflammation"] = 1 if rng.random() < (0.7 if inflamed else 0.1) else (0 if rng.random() < 0.7 else None)
        specs.append(a)
    return specs


def labels(spec: dict) -> dict[str, int]:
    out = {"Tumor": int(spec["tissue"] == "tumor"), "High Cellularity": int(spec["cellularity"] == "high"),
           "Marked Pleomorphism": int(spec["pleomorphism"] == "marked"), "Mitoses": spec["Mitoses"], "Necrosis": spec["Necrosis"]}
    if spec.get("Inflammation") is not None:
        out["Inflammation"] = spec["Inflammation"]
    return out


def attributes(spec: dict) -> dict:
    return {"tissue": spec["tissue"], "cellularity": spec["cellularity"], "pleomorphism": spec["pleomorphism"]}


# ---------------------------------------------------------------- text
def report(spec: dict, rng: np.random.Generator) -> str:
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    s = [pick(PHRASES["tissue"][spec["tissue"]])]
    if spec["tissue"] != "tumor":
        s.append(pick(PHRASES["Tumor"][0]))
    s.append(pick(PHRASES["High Cellularity"][int(spec["cellularity"] == "high")]))
    s.append(pick(PHRASES["Marked Pleomorphism"][spec["pleomorphism"]]))
    rest = [pick(PHRASES[k][spec[k]]) for k in ("Mitoses", "Necrosis", "Inflammation") if spec.get(k) is not None]
    if rng.random() < 0.3:
        rest = [rest[i] for i in rng.permutation(len(rest))]
    return " ".join(s + rest)


def prompt(spec: dict, rng: np.random.Generator) -> str:
    parts = []
    if spec["pleomorphism"] == "marked":
        parts.append("marked pleomorphism")
    for k, word in (("Mitoses", "mitoses"), ("Necrosis", "necrosis"), ("Inflammation", "inflammation")):
        if spec.get(k) == 1:
            parts.append(word)
        elif spec.get(k) == -1:
            parts.append(f"possible {word}")
    head = PROMPT_HEADS[int(rng.integers(len(PROMPT_HEADS)))]
    cell = f"{spec['cellularity']}-cellularity "
    body = f"{head} {cell}{PROMPT_TISSUE[spec['tissue']]}"
    if parts:
        body += " with " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])
    return body + "."


# ---------------------------------------------------------------- image
N_NUCLEI = {("tumor", "high"): 120, ("tumor", "low"): 50, ("normal glandular", "high"): 60, ("normal glandular", "low"): 30,
            ("stroma", "high"): 45, ("stroma", "low"): 18, ("lymphoid", "high"): 170, ("lymphoid", "low"): 90}
PLEO = {"mild": (0.042, 0.08, 0.95), "moderate": (0.05, 0.25, 1.15), "marked": (0.058, 0.45, 1.4)}  # radius, spread, darkness


def _nuclei(out: np.ndarray, cy, cx, ry, rx, theta, dark, edge: float) -> np.ndarray:
    """Stamp elliptical nuclei (darkness * soft mask) into `out` by maximum, each in its own window."""
    size = out.shape[0]
    cy, cx, ry, rx, theta, dark = (np.asarray(v, np.float32).ravel() for v in (cy, cx, ry, rx, theta, dark))
    if not len(cy):
        return out
    half = int(np.ceil((max(ry.max(), rx.max()) + 2 * edge) * size / 2)) + 1
    offs = np.arange(-half, half + 1)
    iy = np.floor((cy + 1) / 2 * size).astype(int)[:, None, None] + offs[None, :, None]
    ix = np.floor((cx + 1) / 2 * size).astype(int)[:, None, None] + offs[None, None, :]
    py, px = (iy + 0.5) / size * 2 - 1, (ix + 0.5) / size * 2 - 1
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    dy, dx = py - cy[:, None, None], px - cx[:, None, None]
    u = (dy * c + dx * s) / ry[:, None, None]
    v = (-dy * s + dx * c) / rx[:, None, None]
    d = (np.sqrt(u * u + v * v) - 1) * np.minimum(ry, rx)[:, None, None]
    val = (dark[:, None, None] * soft(d, edge)).astype(np.float32)
    iy, ix = np.broadcast_arrays(iy, ix)
    inside = (iy >= 0) & (iy < size) & (ix >= 0) & (ix < size)
    np.maximum.at(out, (iy[inside], ix[inside]), val[inside])
    return out


def render(spec: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) uint8 H&E-like tile."""
    y, x = grid(size)
    px = 2.0 / size
    edge = max(0.5 * px, 0.004)
    tissue = spec["tissue"]
    n1, n2 = smooth_noise(rng, size, 0.02, 2)
    angle = rng.uniform(0, np.pi)
    fibres = 0.5 + 0.5 * np.sin(18 * (x * np.cos(angle) + y * np.sin(angle)) + 1.5 * n1)
    eosin = 0.45 + 0.2 * fibres + 0.05 * n2
    keep_out = np.zeros_like(y)  # where nuclei must not be placed (lumina, necrosis)
    basal = []  # gland-lining nuclei (cy, cx)

    if tissue == "normal glandular":
        for _ in range(int(rng.integers(2, 4))):
            gy, gx, r = rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(0.22, 0.32)
            dist = np.sqrt((y - gy) ** 2 + (x - gx) ** 2)
            lumen = soft(dist - 0.6 * r, edge)
            eosin = eosin * (1 - lumen) + 0.05 * lumen
            eosin = np.maximum(eosin, 0.8 * soft(np.abs(dist - 0.8 * r) - 0.2 * r, edge))
            keep_out = np.maximum(keep_out, soft(dist - 1.05 * r, edge))
            phi = np.linspace(0, 2 * np.pi, int(2 * np.pi * 0.88 * r / 0.07), endpoint=False) + rng.uniform(0, 1)
            basal.append(np.stack([gy + 0.88 * r * np.sin(phi), gx + 0.88 * r * np.cos(phi)]))
    elif tissue in ("tumor", "lymphoid"):
        eosin = 0.55 + 0.08 * n2 if tissue == "tumor" else 0.35 + 0.05 * n2

    necrosis = np.zeros_like(y)
    if spec["Necrosis"] in (1, -1):
        cy, cx = rng.uniform(-0.4, 0.4, 2)
        r = 0.45 if spec["Necrosis"] == 1 else 0.2
        necrosis = soft(np.sqrt((y - cy) ** 2 + (x - cx) ** 2) - r * (1 + 0.25 * n1), edge * 3)
        eosin = eosin * (1 - necrosis) + (0.28 + 0.03 * n2) * necrosis
        keep_out = np.maximum(keep_out, necrosis)

    radius, spread, darkness = PLEO[spec["pleomorphism"]]
    if tissue == "lymphoid":
        radius, spread, darkness = 0.026, 0.08, 1.5
    n = int(N_NUCLEI[(tissue, spec["cellularity"])] * rng.uniform(0.85, 1.15))
    cy, cx = rng.uniform(-1.05, 1.05, (2, n * 2)).astype(np.float32)
    ok = keep_out[np.clip(((cy + 1) / 2 * size).astype(int), 0, size - 1), np.clip(((cx + 1) / 2 * size).astype(int), 0, size - 1)] < 0.5
    cy, cx = cy[ok][:n], cx[ok][:n]
    if basal:
        cy, cx = np.concatenate([cy, *(b[0] for b in basal)]).astype(np.float32), np.concatenate([cx, *(b[1] for b in basal)]).astype(np.float32)
    m = len(cy)
    r = radius * np.exp(spread * rng.standard_normal(m)).astype(np.float32)
    elong = 2.6 if tissue == "stroma" else 1 + spread * rng.random(m)
    ry, rx = r * np.sqrt(elong), r / np.sqrt(elong)
    theta = (np.full(m, angle) if tissue == "stroma" else rng.uniform(0, np.pi, m)).astype(np.float32)
    dark = (darkness * rng.uniform(0.8, 1.2, m) * (1 + 0.3 * spread * rng.standard_normal(m))).astype(np.float32)
    haem = _nuclei(np.zeros_like(y), cy, cx, ry, rx, theta, np.clip(dark, 0.5, 2.2), edge)

    extras = []  # (cy, cx, ry, rx, theta, dark) groups
    if spec["Necrosis"] in (1, -1):  # karyorrhectic debris: tiny dark fragments inside the necrotic area
        k = 60 if spec["Necrosis"] == 1 else 15
        dy, dx = rng.uniform(-1, 1, (2, k * 4)).astype(np.float32)
        inside = necrosis[np.clip(((dy + 1) / 2 * size).astype(int), 0, size - 1), np.clip(((dx + 1) / 2 * size).astype(int), 0, size - 1)] > 0.5
        dy, dx = dy[inside][:k], dx[inside][:k]
        extras.append((dy, dx, np.full_like(dy, 0.012), np.full_like(dy, 0.008), rng.uniform(0, 3, len(dy)), np.full_like(dy, 1.3)))
    if spec.get("Inflammation") == 1:
        for _ in range(int(rng.integers(2, 4))):
            ky, kx = rng.uniform(-0.7, 0.7, 2)
            k = int(rng.integers(30, 45))
            ly, lx = (np.array([ky, kx])[:, None] + 0.1 * rng.standard_normal((2, k))).astype(np.float32)
            extras.append((ly, lx, np.full(k, 0.026, np.float32), np.full(k, 0.026, np.float32), np.zeros(k, np.float32), np.full(k, 2.0, np.float32)))
    if spec["Mitoses"] in (1, -1):  # mitotic figures: very dark elongated clumped chromatin with a clear halo
        k = int(rng.integers(3, 6)) if spec["Mitoses"] == 1 else 1
        my, mx = rng.uniform(-0.8, 0.8, (2, k)).astype(np.float32)
        halo = _nuclei(np.zeros_like(y), my, mx, np.full(k, 0.075), np.full(k, 0.075), np.zeros(k), np.ones(k), edge)
        haem = haem * (1 - halo)
        eosin = eosin * (1 - 0.6 * halo)
        extras.append((my, mx, np.full(k, 0.065, np.float32), np.full(k, 0.026, np.float32), rng.uniform(0, np.pi, k).astype(np.float32), np.full(k, 2.6, np.float32)))
    for group in extras:
        haem = _nuclei(haem, *group, edge)

    chromatin = 0.85 + 0.15 * smooth_noise(rng, size, 0.01)[0]
    od = (haem * chromatin)[..., None] * H_VEC * 0.9 + np.clip(eosin, 0, None)[..., None] * E_VEC * 0.55
    od *= rng.uniform(0.9, 1.1)  # staining intensity varies between tiles
    rgb = np.exp(-od) + 0.015 * rng.standard_normal(od.shape, dtype=np.float32)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
