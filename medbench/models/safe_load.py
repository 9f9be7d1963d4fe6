"""Loading a local Hugging Face model folder safely: the checks every adapter shares.

    folder = model_folder(ctx.arg, "transformers", marker="config.json")   # exists, has safetensors
    refuse_remote_code(folder, config, trust=opts["trust_remote_code"])     # auto_map needs an explicit yes
    model, info = Cls.from_pretrained(folder, ..., output_loading_info=True)
    check_loading_info(info, folder)                                        # missing/unexpected keys: error
    hashes = folder_sha256(folder)                                          # provenance: file -> sha256

Rules: safetensors only (a folder with only pickle files is refused with how to re-save it);
custom code (`auto_map`, a non-library pipeline class) runs only with trust_remote_code=1; a
checkpoint whose keys do not fit the architecture is an error, never a half-loaded model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from medbench.errors import UserError
from medbench.weights import sha256_of

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
RESAVE_HINT = ("re-save it as safetensors where loading the pickle is acceptable (trusted files only): "
               "Cls.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)")
DTYPES = ("auto", "bf16", "fp16", "fp32")


class ModelLoadError(UserError):
    """A model folder that cannot be loaded as asked (missing, pickle-only, wrong architecture, bad keys)."""


def model_folder(arg: str | None, adapter: str, marker: str) -> Path:
    """The folder named by `--model ADAPTER:PATH`, checked to exist and to hold `marker`."""
    if not arg:
        raise ModelLoadError(f"--model {adapter}: needs a local folder, e.g. --model {adapter}:/models/NAME")
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"--model {adapter}:{arg}: folder not found ({folder}); download the model there first "
                             f"(docs/models.md)")
    if not (folder / marker).is_file():
        raise ModelLoadError(f"{folder}: no {marker}, so this is not a {adapter} model folder "
                             f"(save one with save_pretrained)")
    return folder


def weight_files(folder: Path, what: str) -> list[Path]:
    """The folder's *.safetensors files (not recursive); pickle-only folders are refused."""
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(f"{folder}: {what} weights are pickle files only ({', '.join(pickles[:3])}), which "
                             f"medbench never loads; {RESAVE_HINT}")
    raise ModelLoadError(f"{folder}: no {what} weights (*.safetensors) in the folder")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


def refuse_remote_code(folder: Path, needs_code: str | None, trust: bool) -> None:
    """Custom code in a model folder runs only when the user said so (recorded in the options)."""
    if needs_code and not trust:
        raise ModelLoadError(f"{folder}: the model needs its own Python code ({needs_code}); medbench does not run "
                             f"it unless you pass --model-opt trust_remote_code=1 (recorded in run.json)")


def custom_code(folder: Path) -> str | None:
    """What in a transformers folder asks for its own Python code: an `auto_map` in any of its JSON
    configs (model, processor, tokenizer) or a .py file; None when there is none."""
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            found.append(f"auto_map in {path.name}")
    found += [f"{p.name}" for p in sorted(folder.glob("*.py"))]
    return ", ".join(found) or None


def check_loading_info(info: dict[str, Any], where: Path) -> None:
    """Refuse a checkpoint whose keys do not fit the architecture (transformers/diffusers loading info)."""
    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        items = sorted(str(k) for k in (info.get(key) or ()))
        if items:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            problems.append(f"{key.replace('_', ' ')}: {', '.join(items[:5])}{more}")
    if problems:
        raise ModelLoadError(f"{where}: the weights do not fit the architecture in its config ({'; '.join(problems)}); "
                             f"medbench never runs a half-loaded model — use the class the checkpoint was saved from")


def folder_sha256(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under `folder` (configs, tokenizer, weights), hidden folders skipped."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file() and not name.startswith("."):
                out[str(path)] = sha256_of(path)
    return out


class HashedFolder:
    """For adapters of a model folder: its file hashes in run.json and a run id that follows the files.
    Subclasses set ``self.folder`` and ``self.hashes`` (``folder_sha256(folder)``)."""

    folder: Path
    hashes: dict[str, str]

    @property
    def weights_sha256(self) -> dict[str, str]:
        """Every file of the folder (configs, processor/tokenizer, weights) -> sha256, for run.json."""
        return dict(self.hashes)

    def identity(self, requests) -> dict[str, Any]:
        """The folder's content digest: the run id follows the files, not the path."""
        return content_identity(self.hashes, self.folder)


def content_identity(hashes: dict[str, str], folder: Path) -> dict[str, Any]:
    """What the run id depends on for a model folder: its files' contents, not its path
    ({"kind": "weights", "sha256", "files": {relative path: sha256}}, as medbench.runner expects)."""
    files = {Path(p).relative_to(folder).as_posix(): d for p, d in sorted(hashes.items())}
    digest = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()
    return {"kind": "weights", "sha256": digest, "files": files}


def config_sha256(hashes: dict[str, str], folder: Path) -> str:
    """One digest over the folder's JSON configs (names relative to the folder): the model's config identity."""
    h = hashlib.sha256()
    for path, digest in sorted(hashes.items()):
        if path.endswith(".json"):
            h.update(f"{Path(path).relative_to(folder)}\0{digest}\n".encode())
    return h.hexdigest()


def given(options: dict[str, Any]) -> dict[str, Any]:
    """The options the user set (None means "not set": the declared default applies)."""
    return {k: v for k, v in options.items() if v is not None}


def torch_dtype(name: str):
    """'auto' (the checkpoint's own dtype) or a torch dtype."""
    import torch

    return {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def rank_device(device: str) -> str:
    """The device this process should use: 'auto' picks cuda when available; under torchrun a bare
    'cuda' becomes this rank's GPU (LOCAL_RANK)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device
