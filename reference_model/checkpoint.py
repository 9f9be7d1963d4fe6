"""Training checkpoints: a folder of safetensors + JSON, exact to resume, no pickle anywhere.

model.safetensors (full weights, gathered on rank 0 under FSDP), optimizer.safetensors (tensors flattened;
FSDP: optimizer-rank<R>.safetensors + .json per rank), trainer.json (step, scalars, optimizer layout),
rng.safetensors (RNG states).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from medbench.errors import UserError
from reference_model.config import MeDiMConfig


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors state dict; a file that is not one (a pickle renamed, a truncated download) is a
    user error naming it, never unpickled."""
    from safetensors import SafetensorError

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e}); re-save the weights with safetensors") from None


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        for k, v in entry.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars["state"].setdefault(str(pid), {})[k] = v
    scalars["key_type"] = "int" if all(isinstance(k, int) for k in state["state"]) else "str"
    return tensors, scalars


def unflatten_optimizer(tensors: dict[str, torch.Tensor], scalars: dict) -> dict:
    cast = int if scalars["key_type"] == "int" else str
    state: dict = {}
    for name, v in tensors.items():
        pid, k = name.rsplit(".", 1)
        state.setdefault(cast(pid), {})[k] = v
    for pid, entry in scalars["state"].items():
        state.setdefault(cast(pid), {}).update(entry)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in scalars["param_groups"]]
    return {"state": state, "param_groups": groups}


def full_state(model, optimizer, fsdp: bool):
    """(full model state, optimizer state). FSDP: the model is gathered (portable safetensors); the optimizer
    state stays this rank's shard (no gather: scalable, and FSDP's CPU gather aliases exp_avg/exp_avg_sq)."""
    if not fsdp:
        core = model.module if hasattr(model, "module") else model
        return core.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state, optimizer.state_dict()


def own_storage(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and one storage per tensor (FSDP's gathered state on CPU can be views of one buffer,
    which safetensors refuses); only views of an already-seen storage are copied."""
    out, seen = {}, set()
    for k, v in tensors.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen or v.untyped_storage().nbytes() != v.numel() * v.element_size():
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        out[k] = v
    return out


def save_checkpoint(folder: Path, model, optimizer, cfg: MeDiMConfig, step: int, fsdp: bool, rank: int,
                    world: int = 1) -> None:
    """Write folder/ atomically (temp folder + rename). FSDP: every rank writes optimizer-rank<R>.safetensors
    (+ .json) into the temp folder, which must be on a filesystem all ranks share."""
    model_state, opt_state = full_state(model, optimizer, fsdp)
    tmp = folder.with_name(folder.name + ".tmp")
    if rank == 0:
        tmp.mkdir(parents=True, exist_ok=True)
    if fsdp:
        if world > 1:
            dist.barrier()
        tensors, scalars = flatten_optimizer(opt_state)
        save_file(own_storage(tensors), str(tmp / f"optimizer-rank{rank}.safetensors"))
        (tmp / f"optimizer-rank{rank}.json").write_text(json.dumps(scalars))
        if world > 1:
            dist.barrier()
    if rank != 0:
        return
    save_file(own_storage(model_state), str(tmp / "model.safetensors"))
    scalars = None
    if not fsdp:
        tensors, scalars = flatten_optimizer(opt_state)
        save_file(own_storage(tensors), str(tmp / "optimizer.safetensors"))
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(tmp / "rng.safetensors"))
    cfg.save(tmp / "config.json")
    meta = {"step": step, "optimizer": scalars} if not fsdp else {"step": step, "fsdp_world_size": world}
    (tmp / "trainer.json").write_text(json.dumps(meta, indent=1))
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    tmp.rename(folder)


def load_checkpoint(folder: Path, model, optimizer, fsdp: bool) -> int:
    """Resume model (unless FSDP: its weights are loaded before wrapping, see train), optimizer and RNG."""
    meta = json.loads((folder / "trainer.json").read_text())
    if fsdp:  # this rank's optimizer shard: same world size and wrapping as when saved
        world = dist.get_world_size() if dist.is_initialized() else 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        if meta.get("fsdp_world_size") != world:
            raise ValueError(f"{folder}: FSDP optimizer shards were written by {meta.get('fsdp_world_size')} ranks; "
                             f"resume with the same number of processes (the weights alone, model.safetensors, load "
                             f"anywhere)")
        shard = folder / f"optimizer-rank{rank}"
        opt_state = unflatten_optimizer(load_file(str(shard) + ".safetensors"),
                                        json.loads(Path(str(shard) + ".json").read_text()))
        optimizer.load_state_dict(opt_state)
    else:
        opt_state = unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), meta["optimizer"])
        model_state = load_file(str(folder / "model.safetensors"))
        (model.module if hasattr(model, "module") else model).load_state_dict(model_state)
        optimizer.load_state_dict(opt_state)
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and "cuda0" in rng:
        torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng])
    return int(meta["step"])
