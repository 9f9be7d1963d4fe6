"""Run the official MeDiM release (`JiaMao/medim_ckpts`, a model.safetensors of the authors' modified Gemma)
inside reference_model, reproducing the official code's behaviours (spec §A.2-A.6, §B.3).

    python -m reference_model.official manifest DIR      # once, after placing the files (records sha256)
    medbench run --task t2i --model medim --model-path DIR

DIR holds (nothing is downloaded; place each file yourself):
    model.safetensors   the release (keys `model.layers.N.adaLN_modulation.weight`, `model.time_embedder.mlp.0.weight`,
                        `model.embed_tokens.weight` [40196, 3072], optional tied `lm_head.weight`)
    tokenizer.json      the Llama-2 tokenizer (NousResearch/Llama-2-7b-hf, the one the official code loads)
    vq.json + vqgan.safetensors   the Chameleon VQGAN, converted by `python -m reference_model.convert_vqgan`
    manifest.json       sha256 of model.safetensors, tokenizer.json and vq.json (this module's `manifest`)
    medim-config.json   optional MeDiMConfig overriding configs/medim-official.json (e.g. size_cond_sizes)

Compatibility mode = configs/medim-official.json: vocabulary text 0..31999, <boi> 32000, <eoi> 32001,
<eos> 32002, [MASK] 32003, codes + 32004; sequence [<boi>, image, <eoi>, cond, text, <eos>]; cond = the
literal "Image Size: Width is tensor([W]) Height is tensor([H])." with its own BOS (`compact_cond`: padded
slots are hidden and skipped by RoPE, so the computation equals the official variable-length one); logits
read at +1 (image) / -1 (text); AdaLN without SiLU, gates multiply directly; conditioning on sigma(t);
the reference sampler path (unnormalised exp(logits) while CFG is off). MIMIC reports get the validation
prefix sentence (B.2) unless `--option mimic_prefix=false`.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import torch

from medbench.errors import UserError
from reference_model.adapter import MedimAdapter
from reference_model.checkpoint import read_weights
from reference_model.config import MeDiMConfig, load_config
from reference_model.medim_options import OFFICIAL_OPTIONS, parse_options
from reference_model.text_tokenizer import LlamaTextTokenizer  # noqa: F401 (also imported from here by older code)

OFFICIAL_CONFIG = "medim-official"
MANIFEST = "manifest.json"
FILES = {
    "model.safetensors": "the official MeDiM release (JiaMao/medim_ckpts model.safetensors)",
    "tokenizer.json": "the Llama-2 tokenizer (tokenizer.json of NousResearch/Llama-2-7b-hf)",
    "vq.json": "the converted Chameleon VQGAN card (python -m reference_model.convert_vqgan --out DIR)",
}
MIMIC_PREFIX = "The image is a radiograph of the chest, showing the thoracic cavity structures, "  # validation (B.2)
DROP_KEYS = re.compile(r"(.*\.)?rotary_emb\.inv_freq$")  # non-persistent buffers some saves include
WRAPPERS = ("module.", "_orig_mod.", "backbone.")
# official name -> reference_model name (prefix rewrites; a layer's inner names are the same on both sides)
KEY_MAP = (("model.time_embedder.", "time_embed."), ("model.t_embedder.", "time_embed."),
           ("model.embed_tokens.", "decoder.embed_tokens."), ("model.norm.", "decoder.norm."),
           ("model.layers.", "decoder.layers."))


# ----------------------------------------------------------------------------- key map

def official_to_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official state dict to MeDiMBackbone's keys. A tied `lm_head.weight` is checked and dropped."""
    out, lm_head, unknown = {}, None, []
    for key, value in state.items():
        for w in WRAPPERS:
            key = key.removeprefix(w)
        if DROP_KEYS.fullmatch(key):
            continue
        if key == "lm_head.weight":
            lm_head = value
            continue
        for src, dst in KEY_MAP:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise UserError(f"official MeDiM checkpoint: unrecognised keys {unknown[:8]} (expected model.*, lm_head.weight)")
    emb = out.get("decoder.embed_tokens.weight")
    if lm_head is not None and emb is not None and not torch.equal(lm_head, emb):
        raise UserError("official MeDiM checkpoint: lm_head.weight differs from model.embed_tokens.weight, but the "
                        "MeDiM head is tied (tie_word_embeddings); this is not the expected release")
    return out


def reference_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse map (official spelling `model.time_embedder.`): export a reference_model backbone."""
    out = {}
    for key, value in state.items():
        for src, dst in KEY_MAP[:1] + KEY_MAP[2:]:
            if key.startswith(dst):
                out[src + key[len(dst):]] = value
                break
        else:
            raise ValueError(f"no official name for {key!r}")
    return out


def official_config(state: dict[str, torch.Tensor], base: MeDiMConfig | None = None) -> MeDiMConfig:
    """configs/medim-official.json with the depth and width read from the checkpoint's tensors."""
    cfg = base or load_config(OFFICIAL_CONFIG)
    layers = {int(m.group(1)) for k in state if (m := re.search(r"layers\.(\d+)\.", k))}
    emb = state.get("decoder.embed_tokens.weight", state.get("model.embed_tokens.weight"))
    if emb is None or not layers:
        raise UserError("official MeDiM checkpoint: no model.embed_tokens.weight or no model.layers.*")
    if sorted(layers) != list(range(len(layers))):
        raise UserError(f"official MeDiM checkpoint: layer indices {sorted(layers)} are not 0..N-1")
    changes = {"num_layers": len(layers), "hidden_size": emb.shape[1]}
    return cfg.replace(**{k: v for k, v in changes.items() if getattr(cfg, k) != v})


def load_official_backbone(state: dict[str, torch.Tensor], cfg: MeDiMConfig | None = None):
    """MeDiMBackbone holding the official weights; strict (no missing or unexpected keys)."""
    from reference_model.backbone import MeDiMBackbone

    mapped = official_to_reference(state)
    cfg = cfg or official_config(mapped)
    net = MeDiMBackbone(cfg)
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in mapped.items()}
    missing, unexpected = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    wrong = [f"{k}: {got[k]} vs {want[k]}" for k in sorted(set(got) & set(want)) if got[k] != want[k]]
    if missing or unexpected or wrong:
        raise UserError(f"official MeDiM checkpoint does not fit config {cfg.name!r}: missing {missing[:6]}, "
                        f"unexpected {unexpected[:6]}, wrong shapes {wrong[:4]}")
    net.load_state_dict(mapped, strict=True)
    return net


# ----------------------------------------------------------------------------- folder

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def is_official_release(folder: str | Path) -> bool:
    """True if folder/model.safetensors has the official key names (read from the header only)."""
    from safetensors import safe_open

    path = Path(folder) / "model.safetensors"
    if not path.is_file() or (Path(folder) / "config.json").is_file():
        return False
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
    return "model.embed_tokens.weight" in keys and any(k.endswith("adaLN_modulation.weight") for k in keys)


def write_manifest(folder: str | Path) -> Path:
    folder = Path(folder)
    for name, what in FILES.items():
        if not (folder / name).is_file():
            raise FileNotFoundError(f"place {what} at {folder / name}")
    path = folder / MANIFEST
    path.write_text(json.dumps({"files": {n: _sha256(folder / n) for n in FILES}}, indent=2) + "\n")
    return path


def verify_folder(folder: str | Path) -> dict[str, str]:
    folder = Path(folder)
    for name, what in FILES.items():
        if not (folder / name).is_file():
            raise FileNotFoundError(f"official MeDiM folder {folder}: place {what} at {folder / name}")
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"{folder / MANIFEST} missing: run python -m reference_model.official manifest {folder}")
    expected = json.loads((folder / MANIFEST).read_text()).get("files", {})
    digests = {name: _sha256(folder / name) for name in FILES}
    for name, digest in digests.items():
        if expected.get(name) != digest:
            raise UserError(f"{folder / name}: sha256 does not match {MANIFEST} (corrupt, or another file)")
    return digests


def folder_config(folder: Path) -> MeDiMConfig:
    custom = folder / "medim-config.json"
    return load_config(custom) if custom.is_file() else load_config(OFFICIAL_CONFIG)


# ----------------------------------------------------------------------------- the medbench model

class OfficialMedimModel(MedimAdapter):
    """The official release answering medbench requests (report->image, image->report, prompt->pair).
    Options: the `medim` plugin's (reference_model.medim_options.OPTIONS, all passed to the sampler) plus
    size=WxH (the size string when the request has no image; default cfg.size_cond_sizes[domain]) and
    mimic_prefix=true|false."""

    def __init__(self, folder: str | Path, device: str = "cpu", options: dict | None = None,
                 image_size: int | None = None):
        from reference_model.sampler import MaskGITSampler
        from reference_model.vq import load_image_tokenizer

        self.folder, self.device, self.image_size = Path(folder), torch.device(device), image_size
        self.digests = verify_folder(self.folder)
        opts = {k: v for k, v in (options or {}).items() if v is not None}
        extra = parse_options({k: opts.pop(k) for k in ("size", "mimic_prefix") if k in opts}, OFFICIAL_OPTIONS,
                              owner="model 'medim' (official release)")
        size, self.mimic_prefix = extra.get("size"), extra.get("mimic_prefix", True)
        self.size = tuple(int(v) for v in size.lower().split("x")) if size else None
        self.options = parse_options(opts)
        self.text_tok = LlamaTextTokenizer(self.folder / "tokenizer.json")
        self.image_tok = load_image_tokenizer(self.folder, device=self.device)
        state = read_weights(self.folder / "model.safetensors")
        self.backbone = load_official_backbone(state, official_config(official_to_reference(state),
                                                                       folder_config(self.folder)))
        del state
        self.cfg, self.tokens = self.backbone.cfg, self.backbone.tokens
        got = (self.image_tok.codebook_size, tuple(self.image_tok.grid))
        if got != (self.cfg.image_codebook_size, tuple(self.cfg.image_grid)) or self.text_tok.vocab_size > self.cfg.text_vocab_size:
            raise UserError(f"{self.folder}: tokenizers (codebook, grid) = {got}, text vocab {self.text_tok.vocab_size} "
                            f"do not fit the official layout")
        self.backbone.to(self.device).eval()
        self.sampler = MaskGITSampler(self.backbone, self.cfg, self.tokens)

    @property
    def weights_sha256(self) -> dict[str, str]:
        """Recorded in run.json provenance (the files verified against manifest.json)."""
        return {str(self.folder / name): digest for name, digest in self.digests.items()}

    def _prefixed(self, text: str, domain: str) -> str:
        return (MIMIC_PREFIX if self.mimic_prefix and domain == "cxr" else "") + text.strip()

    def _size(self, req) -> tuple[int, int]:
        if req.image is not None:
            return req.image.size  # the original size, before padding (B.3)
        if self.size:
            return self.size
        if req.domain in self.cfg.size_cond_sizes:
            return tuple(self.cfg.size_cond_sizes[req.domain])
        side = self.image_tok.image_size
        return side, side

    def _text_row(self, req) -> tuple[list[int], int]:
        """The report in one tokenizer call, as the official dataset (prompt_len only for prompt->pair)."""
        bos = self.text_tok.bos_id
        if req.kind == "report->image":
            return [bos] + self.text_tok.encode(self._prefixed(req.report or "", req.domain)), 0
        if req.kind == "prompt->pair":
            ids = [bos] + self.text_tok.encode(self._prefixed(req.prompt or "", req.domain))
            return ids, min(len(ids), self.tokens.text_len)
        return [], 0

    def _size_ids(self, requests) -> torch.Tensor:
        return torch.tensor([self.tokens.size_cond_ids(self.text_tok, *self._size(r)) for r in requests])

    def _report(self, ids: list[int], prompt_len: int, req) -> str:
        report = self.text_tok.decode(ids)
        return report.removeprefix(MIMIC_PREFIX.strip()).strip() if req.domain == "cxr" else report.strip()


def main(argv: list[str] | None = None) -> None:
    """python -m reference_model.official manifest DIR | verify DIR"""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("manifest", "verify"):
        raise SystemExit("usage: python -m reference_model.official {manifest|verify} DIR")
    if argv[0] == "manifest":
        print(write_manifest(argv[1]))
    else:
        verify_folder(argv[1])
        print(f"{argv[1]}: ok")


if __name__ == "__main__":
    main()
