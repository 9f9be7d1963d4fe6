"""The MeDiM diagnosis (issue 19): score training runs on the phantom *val* split with medbench itself.

    python -m reference_model.train --config tiny-phantom    --out runs/diag/mdlm --max-steps 4000 --threads 1
    python -m reference_model.train --config tiny-phantom-ar --out runs/diag/ar   --max-steps 4000 --threads 1
    python benchmarks/medim_diagnosis.py runs/diag/mdlm runs/diag/ar [--n 200] [--tasks i2t joint_pairs t2i]
                                         [--model-opt steps=32] [--out runs/diag-eval]
    python benchmarks/medim_diagnosis.py --tokenizer-ceiling reference_model/checkpoints/tiny-phantom
    python benchmarks/medim_diagnosis.py runs/diag/mdlm runs/diag/ar --likelihood     # joint NLL / ELBO per token
    python benchmarks/medim_diagnosis.py runs/diag/mdlm --checkpoint reference_model/checkpoints/tiny-phantom

Each RUN_DIR is exported (reference_model.export) and evaluated with `medbench run --model medim --model-path`
on a folder dataset whose test split is the cxr phantom's val split (choices are made on val; the test split is
for docs/benchmarks.md). `--likelihood` prints each run's joint per-token NLL on 512 val examples instead: exact for
an AR run (both orders), the ELBO for an MDLM run (joint case, 4 draws of t), plus the ELBO's per-sample spread
under the 1/t and the flat weighting. `--tokenizer-ceiling VQ_DIR` instead scores the val images' own VQ reconstructions
(with the real reports) as an external system: the best any model using that tokenizer can reach.
Prints a Markdown table of the key numbers with 95 % CIs.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

KEY = {"i2t": ["nlg.coco.bleu4", "clinical.ce_f1.micro14.unc_pos", "report.coherence.contradiction_rate"],
       "joint_pairs": ["clinical.ce_f1.micro14.unc_pos", "pair.consistency.f1_relative",
                       "report.coherence.contradiction_rate"],
       "t2i": ["image.label_fidelity.auroc_macro", "image.fid@phantom-encoder"]}


def val_folder(out: Path) -> Path:
    """A folder dataset: the cxr phantom's train split as train, its val split as test."""
    from medbench.data.phantom.generate import ensure_phantom

    folder = out / "cxr-val"
    if not (folder / "test" / "labels.jsonl").is_file():
        root = Path(ensure_phantom("cxr"))
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(root / "train", folder / "train")
        shutil.copytree(root / "val", folder / "test")
    return folder


def medbench_run(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "medbench", "run", *args, "--store", "", "--no-report"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"medbench run {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    folder = proc.stdout.split("run folder:")[-1].split()[0]
    return json.loads((Path(folder) / "run.json").read_text())["metrics"]


def reconstructions(vq_dir: Path, task: str, dataset: Path, n: int, out: Path) -> Path:
    """Answer the task's requests with each val image's VQ reconstruction and its real report."""
    from PIL import Image

    from reference_model.data import image_to_tensor, tensor_to_image
    from reference_model.vq import load_image_tokenizer

    req = out / f"requests-{task}"
    subprocess.run([sys.executable, "-m", "medbench", "requests", "--task", task, "--dataset", f"folder:{dataset}",
                    "--n", str(n), "--out", str(req)], check=True, capture_output=True)
    answers = out / f"reconstructions-{task}"
    answers.mkdir(parents=True, exist_ok=True)
    tok = load_image_tokenizer(vq_dir)
    for line in (req / "requests.jsonl").read_text().splitlines():
        r = json.loads(line)
        stem = dataset / "test" / r["id"]
        with Image.open(stem.with_suffix(".png")) as im:
            codes = tok.encode(image_to_tensor(im, tok.image_size)[None])
        for name in r["outputs"]:
            if name.endswith(".png"):
                tensor_to_image(tok.decode(codes)[0], r["domain"]).save(answers / name)
            else:
                shutil.copyfile(stem.with_suffix(".txt"), answers / name)
    return answers


def export(run_dir: Path, ckpt: Path) -> Path:
    """The run's evaluable checkpoint, exported again only when the run's weights changed."""
    weights = "model.safetensors"
    if (ckpt / weights).is_file() and filecmp.cmp(run_dir / "checkpoint" / weights, ckpt / weights, shallow=False):
        return ckpt
    shutil.rmtree(ckpt, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "reference_model.export", str(run_dir), str(ckpt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"exporting {run_dir} failed:\n{proc.stderr[-2000:]}")
    return ckpt


def likelihood(run_dir: Path, n: int = 512, batch: int = 64) -> str:
    import torch

    from reference_model.autoregressive import NextToken
    from reference_model.backbone import MeDiMBackbone
    from reference_model.checkpoint import read_weights
    from reference_model.config import load_config
    from reference_model.diffusion import MaskedDiffusion
    from reference_model.train import build_dataset, collate

    cfg = load_config(run_dir / "checkpoint" / "config.json")
    model = MeDiMBackbone(cfg)
    model.load_state_dict(read_weights(run_dir / "checkpoint" / "model.safetensors"))
    model.eval()
    data = build_dataset(cfg, "val", progress=False)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n].tolist()
    joint = cfg.replace(p_t2i=0, p_i2t=0, p_prompt=0, p_cond_dropout=0)
    objective = NextToken(cfg) if cfg.objective == "ar" else MaskedDiffusion(joint)
    per_batch, spread = [], {}
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            b = collate([data[i] for i in idx[s:s + batch]], objective.tokens)
            k = len(idx[s:s + batch])
            if cfg.objective == "ar":
                noises = [{"text_first": torch.full((k,), f)} for f in (True, False)]
            else:
                noises = [objective.draw_noise(k, torch.Generator().manual_seed(1000 * r + s)) for r in range(4)]
            per_batch.append(sum(objective.loss(model, b, z)[0] for z in noises) / len(noises))
            if cfg.objective == "mdlm":  # per-sample losses of the bundled cases under both weightings
                z = MaskedDiffusion(cfg).draw_noise(k, torch.Generator().manual_seed(s))
                for w in ("elbo", "flat"):
                    losses = MaskedDiffusion(cfg.replace(loss_weighting=w)).per_sample_loss(model, b, z)[0]
                    spread.setdefault(w, []).append((losses, z["t"]))
    line = f"{run_dir.name}: {'NLL' if cfg.objective == 'ar' else 'ELBO'} {torch.stack(per_batch).mean():.4f} nats/token"
    for w, parts in spread.items():
        loss, t = (torch.cat(x) for x in zip(*parts))
        small = t < 0.1
        line += (f"; {w}: per-sample cv {loss.std() / loss.mean():.2f}, t < 0.1 is {small.float().mean():.3f} of the "
                 f"samples and {loss[small].sum() / loss.sum():.3f} of the loss")
    return line


def fmt(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "—"
    ci = f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if m.get("ci_low") is not None else ""
    return f"{m['value']:.3f}{ci}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", type=Path, help="training run folders (reference_model.train --out)")
    p.add_argument("--tokenizer-ceiling", type=Path, default=None, help="score VQ reconstructions of VQ_DIR instead")
    p.add_argument("--likelihood", action="store_true", help="print each run's joint per-token NLL / ELBO instead")
    p.add_argument("--tasks", nargs="+", default=["i2t", "joint_pairs", "t2i"])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--model-opt", action="append", default=[], help="sampler option for every run, e.g. steps=32")
    p.add_argument("--checkpoint", action="append", type=Path, default=[],
                   help="an exported checkpoint to score beside the runs (e.g. the bundled one)")
    p.add_argument("--out", type=Path, default=Path("runs/diag-eval"))
    a = p.parse_args(argv)
    if a.likelihood:
        for run_dir in a.runs:
            print(likelihood(run_dir))
        return
    dataset = val_folder(a.out)
    common = ["--dataset", f"folder:{dataset}", "--n", str(a.n), "--bootstrap", str(a.bootstrap),
              "--out", str(a.out / "runs")]
    rows = []
    if a.tokenizer_ceiling:
        got = {task: medbench_run(["--task", task, "--model", f"outputs:{reconstructions(a.tokenizer_ceiling, task, dataset, a.n, a.out)}", *common])
               for task in a.tasks if task != "i2t"}
        rows.append((f"VQ reconstructions ({a.tokenizer_ceiling})", got))
    opts = [x for o in a.model_opt for x in ("--model-opt", o)]
    checkpoints = [(c.name, c) for c in a.checkpoint]
    checkpoints += [(r.name, export(r, a.out / "checkpoints" / r.name)) for r in a.runs]
    for name, ckpt in checkpoints:
        got = {task: medbench_run(["--task", task, "--model", "medim", "--model-path", str(ckpt), *opts, *common])
               for task in a.tasks}
        rows.append((name, got))
    header = [f"{task}: {name}" for task in a.tasks for name in KEY[task]]
    print("| run | " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(header))
    for name, got in rows:
        cells = [fmt(got.get(task, {}).get(metric)) for task in a.tasks for metric in KEY[task]]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
