"""cxr-phantom: SYNTHETIC chest-radiograph-like images with visible findings and CheXpert-style reports.

Not clinical data. One study = a findings spec (sampled per patient so findings correlate across a
patient's studies) -> a grayscale image, a radiology-style report, CheXpert labels, a short prompt.

Label convention (CheXpert): 1 positive, 0 explicitly negated, -1 uncertain (the image then shows a
subtle/small version of the finding), key absent = not mentioned. Only the 8 keys of OBSERVATIONS
are ever mentioned; the other CheXpert observations (Enlarged Cardiomediastinum, Lung Opacity,
Pneumonia, Atelectasis, Pleural Other, Fracture) never appear. "No Finding" is 1 exactly when no
observation other than Support Devices is positive or uncertain, else absent.

The report phrasings below are module constants so a rule-based labeler can be checked against
them: one finding statement per sentence, hedges and negations placed before the mention except the
"is normal"/"normal in size" cardiac forms, and no words from CheXpert's other mention lists or its
No Finding veto list (e.g. line, contour, opacity, density, prominence, thickening, blunting).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

OBSERVATIONS = ("No Finding", "Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Consolidation",
                "Lung Lesion", "Edema", "Support Devices")
FINDINGS = OBSERVATIONS[1:]
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
SEVERITY_ADVERB = {"mild": "mildly", "moderate": "moderately", "marked": "markedly", "severe": "severely"}

# ---- report phrasings (placeholders: {severity} {severity_adv} {side} {size} {lobe} {cm} {n}) ----
PHRASES = {
    "Cardiomegaly": {
        1: ["{Severity} cardiomegaly.", "The heart is {severity_adv} enlarged.", "Heart size is {severity_adv} enlarged.",
            "There is {severity} cardiomegaly.", "{Severity} enlargement of the cardiac silhouette."],
        0: ["Heart size is normal.", "The heart is normal in size.", "No cardiomegaly.", "Normal heart size."],
        -1: ["Possible mild cardiomegaly.", "The heart size may be mildly enlarged.", "Cannot exclude mild cardiomegaly.",
             "Likely mild cardiomegaly."],
    },
    "Pleural Effusion": {
        1: ["{Size} {side} pleural effusion.", "There is a {size} {side} pleural effusion.",
            "A {size} {side} pleural effusion is present.", "{Size} {side} effusion is seen."],
        "bilateral": ["{Size} bilateral pleural effusions.", "There are {size} bilateral pleural effusions.",
                      "{Size} bilateral effusions are present."],
        0: ["No pleural effusion.", "There is no pleural effusion.", "No evidence of pleural effusion.",
            "Negative for pleural effusion."],
        -1: ["Possible small {side} pleural effusion.", "Cannot exclude a small {side} pleural effusion.",
             "Findings suspicious for a small {side} pleural effusion."],
    },
    "Pneumothorax": {
        1: ["{Size} {side} apical pneumothorax.", "There is a {size} {side} pneumothorax.",
            "A {size} {side} pneumothorax is present.", "{Size} {side} pneumothorax with a visible visceral pleural edge."],
        0: ["No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax.", "Negative for pneumothorax."],
        -1: ["Cannot exclude a small {side} apical pneumothorax.", "Possible small {side} pneumothorax.",
             "Subtle lucency at the {side} apex may represent a small pneumothorax."],
    },
    "Consolidation": {
        1: ["Consolidation in the {lobe}.", "{Lobe} consolidation.", "Focal consolidation in the {lobe}.",
            "There is patchy consolidation in the {lobe}."],
        0: ["No focal consolidation.", "Lungs are free of focal consolidation.", "There is no consolidation."],
        "clear": ["The lungs are clear without evidence of consolidation."],  # only when no lung finding
        -1: ["Patchy {lobe} haziness may represent early consolidation.", "Possible early consolidation in the {lobe}.",
             "Cannot exclude consolidation in the {lobe}."],
    },
    "Lung Lesion": {
        1: ["A {cm} cm nodule in the {lobe}.", "{Lobe} pulmonary nodule measuring {cm} cm.",
            "There is a {cm} cm nodule in the {lobe}.", "Well-circumscribed nodule in the {lobe}."],
        0: ["No pulmonary nodule.", "No discrete nodule.", "There is no pulmonary mass."],
        -1: ["Possible small nodule in the {lobe}.", "Cannot exclude a small nodule in the {lobe}.",
             "Faint rounded focus in the {lobe} suspicious for a nodule."],
    },
    "Edema": {
        1: ["{Severity} pulmonary edema.", "There is {severity} interstitial pulmonary edema.",
            "{Severity} interstitial edema.", "Bilateral perihilar haziness due to {severity} pulmonary edema."],
        0: ["No pulmonary edema.", "No evidence of pulmonary edema.", "There is no edema.", "No pulmonary vascular congestion."],
        -1: ["Possible mild pulmonary edema.", "Mild perihilar haziness may represent early pulmonary edema.",
             "Cannot exclude mild pulmonary vascular congestion."],
    },
    "Support Devices": {
        "ett": ["Endotracheal tube terminates {n} cm above the carina.",
                "An endotracheal tube is in place with tip {n} cm above the carina."],
        "cvc": ["Right subclavian central venous catheter with tip in the superior vena cava.",
                "A right subclavian central venous catheter terminates in the superior vena cava."],
        "pacemaker": ["Left chest wall pacemaker in place.", "A left-sided pacemaker is present."],
    },
}
OPENINGS = ["Frontal view of the chest.", "PA view of the chest.", "Single frontal radiograph of the chest."]
OPENING_PORTABLE = "Portable AP view of the chest."
NORMAL_LUNGS = ["The lungs are clear.", "The lungs are well expanded and clear."]
NORMAL_IMPRESSION = ["No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality."]
BONES = ["The osseous structures are intact.", "Visualized osseous structures are unremarkable."]
PROMPT_HEADS = ["Frontal chest radiograph", "Chest X-ray, frontal view", "PA chest radiograph"]
DEVICE_PROMPT = {"ett": "an endotracheal tube", "cvc": "a central venous catheter", "pacemaker": "a pacemaker"}

UNCERTAIN_P = 0.07  # chance a non-positive finding is reported as uncertain (and drawn subtly)
NEGATION_P = {"Cardiomegaly": 0.7, "Pleural Effusion": 0.75, "Pneumothorax": 0.7, "Consolidation": 0.65,
              "Lung Lesion": 0.25, "Edema": 0.4}


# ---------------------------------------------------------------- sampling
def sample_patient(rng: np.random.Generator, n_studies: int) -> list[dict]:
    """Findings specs for one patient's studies; chronic traits persist, acute ones recur."""
    cardiac = rng.random() < 0.25  # heart-failure phenotype: cardiomegaly, edema, effusions go together
    icu = rng.random() < 0.2
    trait = {
        "heart": float(rng.uniform(0.95, 1.04)),
        "severity": str(rng.choice(["mild", "moderate", "marked"])),
        "pacemaker": bool(rng.random() < 0.08),
        "nodule": bool(rng.random() < 0.15),
        "nodule_lobe": str(rng.choice(LOBES)),
        "nodule_xy": (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5))),
        "lobe": str(rng.choice(LOBES)),
        "effusion_side": str(rng.choice(["left", "right", "bilateral"], p=[0.3, 0.3, 0.4] if cardiac else [0.45, 0.45, 0.1])),
    }
    p = {"Cardiomegaly": 0.85 if cardiac else 0.06, "Edema": 0.45 if cardiac else 0.05,
         "Pleural Effusion": 0.45 if cardiac else 0.12, "Pneumothorax": 0.2 if icu else 0.08,
         "Consolidation": 0.3 if icu else 0.16, "Lung Lesion": 0.9 if trait["nodule"] else 0.03}
    return [_sample_study(rng, trait, p, icu) for _ in range(n_studies)]


def _sample_study(rng, trait, p, icu) -> dict:
    f: dict = {}
    for name in NEGATION_P:
        u = rng.random()
        if u < p[name]:
            f[name] = {"state": 1}
        elif u < p[name] + UNCERTAIN_P:
            f[name] = {"state": -1}
        elif rng.random() < NEGATION_P[name]:
            f[name] = {"state": 0}
    sides = ["left", "right"]
    for name, d in f.items():
        if d["state"] == 0:
            continue
        unc = d["state"] == -1
        if name == "Cardiomegaly":
            d["severity"] = "mild" if unc else (trait["severity"] if rng.random() < 0.8 else str(rng.choice(["mild", "moderate", "marked"])))
        elif name == "Pleural Effusion":
            d["side"] = str(rng.choice(sides)) if unc else trait["effusion_side"]
            d["size"] = "small" if unc else str(rng.choice(["small", "moderate", "large"], p=[0.45, 0.35, 0.2]))
        elif name == "Pneumothorax":
            d["side"] = str(rng.choice(sides))
            d["size"] = "small" if unc else str(rng.choice(["small", "moderate", "large"], p=[0.5, 0.35, 0.15]))
        elif name == "Consolidation":
            d["lobe"] = trait["lobe"] if rng.random() < 0.6 else str(rng.choice(LOBES))
        elif name == "Lung Lesion":
            d["lobe"], d["offset"] = trait["nodule_lobe"], trait["nodule_xy"]
            d["cm"] = 0.8 if unc else round(float(rng.uniform(1.0, 2.5)), 1)
        elif name == "Edema":
            d["severity"] = "mild" if unc else str(rng.choice(["mild", "moderate", "severe"], p=[0.5, 0.35, 0.15]))
    devices = [k for k, q in (("ett", 0.7 if icu else 0.02), ("cvc", 0.7 if icu else 0.05)) if rng.random() < q]
    if trait["pacemaker"]:
        devices.append("pacemaker")
    if devices:
        f["Support Devices"] = {"state": 1, "devices": devices, "n": int(rng.integers(3, 7))}
    return {"findings": f, "heart": trait["heart"], "portable": bool(icu)}


def labels(spec: dict) -> dict[str, int]:
    out = {name: d["state"] for name, d in spec["findings"].items()}
    if not any(v in (1, -1) for k, v in out.items() if k != "Support Devices"):
        out["No Finding"] = 1
    return {k: out[k] for k in OBSERVATIONS if k in out}


def attributes(spec: dict) -> dict:
    return {"view": "AP" if spec["portable"] else "PA",
            "findings": {k: {a: v for a, v in d.items() if a not in ("offset", "n")} for k, d in spec["findings"].items()}}


# ---------------------------------------------------------------- text
def _fill(template: str, d: dict) -> str:
    sev = d.get("severity", "")
    lobe = d.get("lobe", "")
    text = template.format(severity=sev, Severity=sev.capitalize(), severity_adv=SEVERITY_ADVERB.get(sev, ""),
                           side=d.get("side", ""), size=d.get("size", ""), Size=d.get("size", "").capitalize(),
                           lobe=lobe, Lobe=lobe.capitalize(), cm=d.get("cm", ""), n=d.get("n", ""))
    return text[0].upper() + text[1:]


def report(spec: dict, rng: np.random.Generator) -> str:
    f = spec["findings"]
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    head = [OPENING_PORTABLE if spec["portable"] else pick(OPENINGS)]
    if "Support Devices" in f:
        d = f["Support Devices"]
        head += [_fill(pick(PHRASES["Support Devices"][k]), d) for k in d["devices"]]
    lung_findings = [n for n in ("Consolidation", "Lung Lesion", "Edema") if f.get(n, {}).get("state") in (1, -1)]
    body = []
    for name in ("Consolidation", "Lung Lesion", "Edema", "Pleural Effusion", "Pneumothorax", "Cardiomegaly"):
        if name not in f:
            continue
        d = f[name]
        key = "bilateral" if name == "Pleural Effusion" and d.get("side") == "bilateral" else d["state"]
        if name == "Consolidation" and key == 0 and not lung_findings and rng.random() < 0.3:
            key = "clear"
        body.append(_fill(pick(PHRASES[name][key]), d))
    if not lung_findings and "Consolidation" not in f and rng.random() < 0.7:
        body.insert(0, pick(NORMAL_LUNGS))
    order = rng.permutation(len(body)) if rng.random() < 0.3 else range(len(body))
    tail = [pick(BONES)] if rng.random() < 0.4 else []
    if labels(spec).get("No Finding") == 1 and rng.random() < 0.8:
        tail.append(pick(NORMAL_IMPRESSION))
    return " ".join(head + [body[i] for i in order] + tail)


def prompt(spec: dict, rng: np.random.Generator) -> str:
    f = spec["findings"]
    parts = []
    for name, d in f.items():
        if d["state"] == 0 or name == "Support Devices":
            continue
        hedge = "possible " if d["state"] == -1 else ""
        if name == "Cardiomegaly":
            parts.append(f"{hedge}{d['severity']} cardiomegaly")
        elif name == "Pleural Effusion":
            parts.append(f"{hedge}{d['size']} {d['side']} pleural effusion{'s' if d['side'] == 'bilateral' else ''}")
        elif name == "Pneumothorax":
            parts.append(f"{hedge}{d['size']} {d['side']} pneumothorax")
        elif name == "Consolidation":
            parts.append(f"{hedge}{d['lobe']} consolidation")
        elif name == "Lung Lesion":
            parts.append(f"{hedge}a {d['lobe']} nodule")
        elif name == "Edema":
            parts.append(f"{hedge}{d['severity']} pulmonary edema")
    if "Support Devices" in f:
        parts += [DEVICE_PROMPT[k] for k in f["Support Devices"]["devices"]]
    head = PROMPT_HEADS[int(rng.integers(len(PROMPT_HEADS)))]
    if not parts:
        return f"{head} with no acute findings."
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{head} with {body}."


# ---------------------------------------------------------------- drawing helpers (shared with path.py)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pixel-centre coordinates in [-1, 1], y pointing down."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return np.meshgrid(t, t, indexing="ij")


def smooth_noise(rng: np.random.Generator, size: int, scale: float, channels: int = 1) -> np.ndarray:
    """Gaussian-filtered white noise (feature size `scale` in [-1,1] units), unit std, shape (channels, size, size)."""
    white = rng.standard_normal((channels, size, size), dtype=np.float32)
    out = np.fft.irfft2(np.fft.rfft2(white) * _gauss_kernel(size, scale), s=(size, size)).astype(np.float32)
    return out / (out.std(axis=(1, 2), keepdims=True) + 1e-6)


@lru_cache(maxsize=32)
def _gauss_kernel(size: int, scale: float) -> np.ndarray:
    k = np.fft.fftfreq(size).astype(np.float32)
    sigma_px = scale * size / 2
    kernel = np.exp(-2 * (np.pi * sigma_px) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    return kernel[:, : size // 2 + 1]


def soft(d: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-mask from a signed distance (negative inside)."""
    return 0.5 - 0.5 * np.tanh(d * (0.5 / width))


def ellipse_d(y, x, cy, cx, ay, ax):
    return (np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2) - 1) * min(ax, ay)


def polyline_d(y, x, points: np.ndarray) -> np.ndarray:
    """Distance from each pixel to a polyline given as (n, 2) (y, x) points."""
    a, b = points[:-1], points[1:]
    ab = b - a
    py, px = y[..., None], x[..., None]
    t = ((py - a[:, 0]) * ab[:, 0] + (px - a[:, 1]) * ab[:, 1]) / np.maximum((ab ** 2).sum(1), 1e-9)
    t = np.clip(t, 0, 1)
    return np.sqrt((py - a[:, 0] - t * ab[:, 0]) ** 2 + (px - a[:, 1] - t * ab[:, 1]) ** 2).min(-1)


def bezier(p0, p1, p2, n: int = 16) -> np.ndarray:
    t = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float32) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


# ---------------------------------------------------------------- image
LOBE_CENTRES = {"right upper lobe": (-0.33, -0.42), "right middle lobe": (0.08, -0.32), "right lower lobe": (0.24, -0.45),
                "left upper lobe": (-0.3, 0.42), "left lower lobe": (0.26, 0.48)}  # (y, x); patient right = image left
SIDE_SIGN = {"right": -1.0, "left": 1.0}
EFFUSION_HEIGHT = {"small": 0.16, "moderate": 0.32, "large": 0.52}
PTX_SHRINK = {"small": 0.84, "moderate": 0.7, "large": 0.56}
EDEMA_STRENGTH = {"mild": 0.4, "moderate": 0.6, "severe": 0.8}
HEART_SCALE = {"mild": 1.2, "moderate": 1.34, "marked": 1.48}


@lru_cache(maxsize=4)
def _anatomy(size: int) -> dict:
    """The study-independent layers (computed once per size and process; never mutated)."""
    y, x = grid(size)
    px = 2.0 / size
    edge = max(0.5 * px, 0.006)
    half_width = 0.28 + 0.64 / (1 + np.exp(-(y + 0.8) / 0.05))
    body = soft(np.abs(x) - half_width, edge * 2)
    lungs = []
    for s, dome_top in ((-1.0, 0.4), (1.0, 0.46)):
        lung = soft(ellipse_d(y, x, -0.06, 0.4 * s, 0.68, 0.31), edge * 2)
        dome = dome_top + 0.3 * ((x - 0.36 * s) / 0.33) ** 2
        lungs.append(lung * soft(y - dome, edge * 1.5))
    mediastinum = np.maximum(soft(np.abs(x + 0.01) - 0.12, edge * 2) * soft(y - 0.3, edge),
                             soft(ellipse_d(y, x, -0.36, 0.1, 0.08, 0.09), edge * 2))
    bones = 0.06 * soft(np.abs(x) - 0.06, edge) * body  # spine
    thorax = body * soft(np.abs(x) - 0.86, edge) * soft(y - 0.62, 0.05) * soft(0.07 - np.abs(x), edge)
    for i in range(10):  # posterior ribs
        yc = -0.8 + i * 0.14 - 0.3 * np.abs(x) + 0.6 * x ** 2
        bones += 0.05 * soft(np.abs(y - yc) - 0.02, edge) * thorax
    for s in (-1.0, 1.0):  # clavicles
        bones += 0.12 * soft(polyline_d(y, x, np.array([[-0.7, 0.08 * s], [-0.8, 0.7 * s]], np.float32)) - 0.03, edge)
    hilum_w = np.exp(-np.sqrt((np.abs(x) - 0.18) ** 2 + (y - 0.02) ** 2) / 0.35)
    layers = dict(y=y, x=x, px=px, edge=edge, body=body, right=lungs[0], left=lungs[1], mediastinum=mediastinum,
                  air=np.clip(lungs[0] + lungs[1], 0, 1) * (1 - mediastinum), bones=bones, hilum_w=hilum_w)
    for v in layers.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    return layers


def render(spec: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) uint8 radiograph-like image: bright = dense (bone, heart, fluid), dark = air."""
    f = spec["findings"]
    state = lambda name: f.get(name, {}).get("state")  # noqa: E731
    a = _anatomy(size)
    y, x, px, edge, body = a["y"], a["x"], a["px"], a["edge"], a["body"]
    side_lung = {"right": a["right"], "left": a["left"]}
    mediastinum = a["mediastinum"]

    c = f.get("Cardiomegaly", {})
    scale = spec["heart"] * (1.12 if state("Cardiomegaly") == -1 else HEART_SCALE.get(c.get("severity"), 1.0) if state("Cardiomegaly") == 1 else 1.0)
    hx = 0.33 * scale
    heart = soft(ellipse_d(y, x, 0.33, 0.07 + 0.5 * (hx - 0.33), 0.26 + 0.12 * (scale - 1), hx), edge * 2)
    mediastinum = np.maximum(soft(np.abs(x + 0.01) - 0.12, edge * 2) * soft(y - 0.3, edge), soft(ellipse_d(y, x, -0.36, 0.1, 0.08, 0.09), edge * 2))
    air = a["air"] * (1 - heart)

    density = np.zeros_like(y)
    markings_gain = np.float32(1.0)
    no_markings = np.zeros_like(y)
    if state("Pleural Effusion") in (1, -1):
        d = f["Pleural Effusion"]
        h = 0.09 if d["state"] == -1 else EFFUSION_HEIGHT[d["size"]]
        for side in (["right", "left"] if d["side"] == "bilateral" else [d["side"]]):
            s = SIDE_SIGN[side]
            lateral = np.clip((x * s - 0.15) / 0.55, 0, 1)
            level = 0.66 - h - 0.6 * h * lateral ** 2  # meniscus: climbs along the lateral wall
            fluid = soft(level - y, edge * 2) * soft(-x * s, edge) * soft(np.abs(x) - 0.82, edge)
            air = air * (1 - 0.95 * fluid)
            density += 0.05 * fluid * body
    if state("Consolidation") in (1, -1):
        d = f["Consolidation"]
        cy, cx = LOBE_CENTRES[d["lobe"]]
        k = 0.9 if d["state"] == 1 else 0.45
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * (0.14 if d["state"] == 1 else 0.08) ** 2))
        patch = np.clip(blob * (0.8 + 0.5 * smooth_noise(rng, size, 0.035)[0]) - 0.15, 0, 1) / 0.85
        air = air * (1 - k * patch)
    if state("Lung Lesion") in (1, -1):
        d = f["Lung Lesion"]
        cy, cx = LOBE_CENTRES[d["lobe"]]
        cy, cx = cy + 0.12 * d["offset"][0], cx + 0.1 * d["offset"][1]
        r = 0.035 if d["state"] == -1 else 0.035 + 0.022 * d["cm"]
        density += (0.18 if d["state"] == -1 else 0.4) * soft(np.sqrt((y - cy) ** 2 + (x - cx) ** 2) - r, edge)
    if state("Edema") in (1, -1):
        d = f["Edema"]
        k = 0.25 if d["state"] == -1 else EDEMA_STRENGTH[d["severity"]]
        haze = np.exp(-((np.abs(x) - 0.2) ** 2 / 0.06 + (y - 0.05) ** 2 / 0.14))
        air = air * (1 - k * haze)
        markings_gain = np.float32(1 + 2.5 * k)
    if state("Pneumothorax") in (1, -1):
        d = f["Pneumothorax"]
        s = SIDE_SIGN[d["side"]]
        k = 0.9 if d["state"] == -1 else PTX_SHRINK[d["size"]]
        inner_d = ellipse_d(y, x, -0.06 + (1 - k) * 0.45, 0.4 * s - (1 - k) * 0.12 * s, 0.68 * k, 0.31 * k)
        region = side_lung[d["side"]] * (1 - soft(inner_d, edge)) * soft(y - 0.35, 0.1)
        no_markings = np.maximum(no_markings, region)
        density += -0.15 * region + 0.16 * soft(np.abs(inner_d) - 0.6 * px, edge * 0.6) * side_lung[d["side"]] * soft(y - 0.3, 0.1)

    img = 0.04 + 0.52 * body + 0.04 * heart + 0.05 * mediastinum - 0.38 * air * body
    img = img + a["bones"]
    hilum_w = a["hilum_w"]
    vessels = np.clip(smooth_noise(rng, size, 0.02)[0], 0, None)
    img += 0.07 * markings_gain * vessels * hilum_w * air * (1 - no_markings)
    img += density
    for kind in f.get("Support Devices", {}).get("devices", []):
        img += _device(kind, y, x, px, edge)

    gain, offset = rng.uniform(0.92, 1.08), rng.uniform(-0.03, 0.03)
    img = img * gain + offset + 0.012 * rng.standard_normal(img.shape, dtype=np.float32)
    return (np.clip(img, 0, 1) ** 0.9 * 255 + 0.5).astype(np.uint8)


def _device(kind: str, y, x, px: float, edge: float) -> np.ndarray:
    w = max(0.7 * px, 0.012)
    if kind == "ett":
        d = polyline_d(y, x, np.array([[-1.0, 0.0], [-0.4, 0.01]], np.float32))
        return 0.35 * soft(d - w, edge * 0.5)
    if kind == "cvc":
        d = polyline_d(y, x, bezier((-0.66, -0.62), (-0.58, -0.1), (-0.22, -0.07)))
        return 0.3 * soft(d - w, edge * 0.5)
    box = soft(np.maximum(np.abs(y + 0.62) - 0.05, np.abs(x - 0.58) - 0.07), edge)
    lead = soft(polyline_d(y, x, bezier((-0.6, 0.52), (-0.35, 0.05), (0.3, 0.02))) - w, edge * 0.5)
    return 0.5 * box + 0.3 * lead
