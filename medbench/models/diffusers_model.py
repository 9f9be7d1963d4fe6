"""`diffusers:PATH`: any local text-to-image DiffusionPipeline (RoentGen and other Stable-Diffusion
fine-tunes) as a report -> image model.

    medbench run --task t2i --model diffusers:/models/roentgen --model-opt steps=75 --model-opt guidance_scale=4

The folder is a `save_pretrained` pipeline (model_index.json + one subfolder per component). Every model
component is loaded by its own class from safetensors with its loading info checked (missing or unexpected
keys are an error), then the pipeline is assembled from them; nothing is downloaded. Each request gets its
own CPU ``torch.Generator`` seeded with the request's seed and is generated alone, so a seed gives the same
image whatever the batch. The image is returned as the pipeline made it (its size and mode — RGB for
Stable Diffusion — are in `settings["output"]`); nothing is resized. The NSFW safety checker some pipelines
carry (it replaces flagged images with black ones) is left out unless ``safety_checker=1``.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from medbench.errors import UserError
from medbench.models.base import ModelContext
from medbench.models.safe_load import (DTYPES, HashedFolder, ModelLoadError, check_loading_info, config_sha256,
                                       first_line, folder_sha256, given, model_folder, rank_device, read_json,
                                       refuse_remote_code, torch_dtype, weight_files)
from medbench.options import Option, OptionError, resolve
from medbench.records import Output, Request

LIBRARIES = ("diffusers", "transformers")

OPTIONS = (
    Option("steps", int, None, "denoising steps (default: the pipeline's)", low=1, high=10000),
    Option("guidance_scale", float, None, "classifier-free guidance scale (default: the pipeline's)", low=0, high=1000),
    Option("negative_prompt", str, None, "negative prompt for guidance"),
    Option("height", int, None, "output height in pixels (default: the pipeline's native size)", low=8, high=8192),
    Option("width", int, None, "output width in pixels (default: the pipeline's native size)", low=8, high=8192),
    Option("scheduler", str, None, "a diffusers scheduler class compatible with the pipeline's, e.g. "
                                   "DPMSolverMultistepScheduler (default: the folder's)"),
    Option("prompt_template", str, "{report}", "the text prompt; {report} is replaced by the request's report"),
    Option("safety_checker", bool, False, "keep the pipeline's NSFW safety checker (it blacks out flagged images)"),
    Option("dtype", str, "auto", "weights dtype: auto is diffusers' default (float32)", choices=DTYPES),
    Option("trust_remote_code", bool, False, "allow a custom pipeline or component class; recorded"),
)


class DiffusersModel(HashedFolder):
    """A local text-to-image DiffusionPipeline answering report->image requests."""

    def __init__(self, ctx: ModelContext):
        self.opts = resolve(OPTIONS, given(ctx.options), owner="model 'diffusers'", flag="--model-opt")
        if (self.opts["height"] is None) != (self.opts["width"] is None):
            raise OptionError("--model-opt height/width: give both (diffusers pipelines silently ignore one alone "
                              "and make their native size)")
        self.folder = model_folder(ctx.arg, "diffusers", marker="model_index.json")
        self.name = f"diffusers:{self.folder.name}"
        self.index = read_json(self.folder / "model_index.json")
        self.device = rank_device(ctx.device)
        self.pipe = self._load()
        self.call_defaults = self._check_text_to_image()
        if self.opts["scheduler"]:
            self._set_scheduler(self.opts["scheduler"])
        self.pipe.set_progress_bar_config(disable=True)
        self.hashes = folder_sha256(self.folder)
        self.output: dict[str, Any] | None = None  # size and mode of the first image made

    # ------------------------------------------------------------------ loading

    def _components(self) -> dict[str, tuple[str, str]]:
        """component -> (library, class) from model_index.json, custom code refused unless trusted."""
        out = {}
        for name, value in self.index.items():
            if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[0] is None:
                continue
            library, cls = value
            refuse_remote_code(self.folder, f"component {name} from {library!r}" if library not in LIBRARIES else None,
                               self.opts["trust_remote_code"])
            out[name] = (library, cls)
        return out

    def _load(self):
        import diffusers
        import torch

        pipe_class = self.index.get("_class_name")
        refuse_remote_code(self.folder, None if hasattr(diffusers, str(pipe_class)) else f"pipeline class {pipe_class!r}",
                           self.opts["trust_remote_code"])
        dtype = torch_dtype(self.opts["dtype"])
        dtype = None if dtype == "auto" else dtype
        loaded: dict[str, Any] = {}
        for name, (library, cls_name) in self._components().items():
            if name == "safety_checker" and not self.opts["safety_checker"]:
                loaded[name] = None
                continue
            cls = getattr(importlib.import_module(library), cls_name, None)
            if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
                continue  # tokenizers, schedulers, processors: no weights, the pipeline loads them
            sub = self.folder / name
            if not sub.is_dir():
                raise ModelLoadError(f"{self.folder}: model_index.json names component {name!r} but {sub} is missing")
            weight_files(sub, name)
            kw = {"torch_dtype": dtype} if library == "diffusers" else {"dtype": dtype or "auto"}
            try:
                model, info = cls.from_pretrained(self.folder, subfolder=name, local_files_only=True,
                                                  use_safetensors=True, output_loading_info=True, **kw)
            except (ValueError, OSError, RuntimeError) as e:
                raise ModelLoadError(f"{sub}: cannot load as {cls_name} ({first_line(e)})") from None
            check_loading_info(info, sub)
            loaded[name] = model
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(
                self.folder, local_files_only=True, use_safetensors=True, torch_dtype=dtype,
                trust_remote_code=self.opts["trust_remote_code"], **loaded)
        except (ValueError, OSError, TypeError) as e:
            raise ModelLoadError(f"{self.folder}: not a pipeline diffusers can load ({first_line(e)})") from None
        return pipe.to(self.device)

    def _check_text_to_image(self) -> dict[str, Any]:
        """The pipeline's call must take a text prompt and need nothing else; returns its defaults."""
        params = inspect.signature(self.pipe.__call__).parameters
        required = [n for n, p in params.items() if p.default is inspect.Parameter.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "prompt"]
        if "prompt" not in params or required or "generator" not in params:
            raise ModelLoadError(f"{self.folder}: {type(self.pipe).__name__} is not a text-to-image pipeline "
                                 f"(its call needs {required or 'no prompt'}); diffusers: needs one whose call takes "
                                 f"a prompt")
        wanted = ("num_inference_steps", "guidance_scale", "height", "width")
        return {n: p.default for n, p in params.items() if n in wanted}

    def _set_scheduler(self, name: str) -> None:
        compatible = {c.__name__: c for c in getattr(self.pipe.scheduler, "compatibles", [])}
        compatible[type(self.pipe.scheduler).__name__] = type(self.pipe.scheduler)
        if name not in compatible:
            raise ModelLoadError(f"--model-opt scheduler={name}: not a scheduler compatible with "
                                 f"{type(self.pipe.scheduler).__name__}; compatible: {', '.join(sorted(compatible))}")
        self.pipe.scheduler = compatible[name].from_config(self.pipe.scheduler.config)

    # ------------------------------------------------------------------ record

    @property
    def settings(self) -> dict[str, Any]:
        """Every effective setting, for the run record."""
        return {"adapter": "diffusers", "folder": str(self.folder), "options": dict(self.opts),
                "pipeline_class": type(self.pipe).__name__, "scheduler": type(self.pipe.scheduler).__name__,
                "call": self.call_kwargs(), "pipeline_defaults": {k: v for k, v in self.call_defaults.items() if v is not None},
                "dtype": str(self.pipe.dtype).removeprefix("torch."), "device": self.device,
                "config_sha256": config_sha256(self.hashes, self.folder), "output": self.output,
                "seeding": "one CPU torch.Generator per request, seeded with the request's seed"}

    def call_kwargs(self) -> dict[str, Any]:
        o = self.opts
        kw = {"num_inference_steps": o["steps"], "guidance_scale": o["guidance_scale"],
              "negative_prompt": o["negative_prompt"], "height": o["height"], "width": o["width"]}
        return {k: v for k, v in kw.items() if v is not None}

    # ------------------------------------------------------------------ generation

    def generate(self, requests: list[Request]) -> list[Output]:
        import torch
        from PIL import Image

        bad = sorted({r.kind for r in requests} - {"report->image"})
        if bad:
            raise ValueError(f"{self.name} answers report->image requests only, not {bad}")
        outs = []
        for r in requests:
            if not r.report:
                raise ValueError(f"{self.name}: request {r.sample_id!r} has no report to draw")
            prompt = self.opts["prompt_template"].replace("{report}", r.report)
            generator = torch.Generator("cpu").manual_seed(r.seed)
            try:
                with torch.inference_mode():
                    result = self.pipe(prompt=prompt, generator=generator, output_type="pil", **self.call_kwargs())
            except ValueError as e:  # the pipeline's own input checks (sizes, guidance, ...)
                raise UserError(f"{self.name}: the pipeline refused --model-opt {self.call_kwargs()}: {first_line(e)}") from None
            image = result.images[0]
            if not isinstance(image, Image.Image):
                raise ValueError(f"{self.name}: the pipeline returned {type(image).__name__}, not a PIL image")
            flagged = getattr(result, "nsfw_content_detected", None)
            if flagged and flagged[0]:
                raise ValueError(f"{self.name}: the safety checker blacked out the image for {r.sample_id!r}; "
                                 f"run without safety_checker=1")
            if self.output is None:
                self.output = {"size": list(image.size), "mode": image.mode}
            outs.append(Output(r.sample_id, image=image))
        return outs


def factory(ctx: ModelContext) -> DiffusersModel:
    return DiffusersModel(ctx)
