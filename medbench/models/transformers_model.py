"""`transformers:PATH`: any local image-text-to-text model (LLaVA, Qwen2-VL, CheXagent, MAIRA-2, ...) as an
image -> report model.

    medbench run --task i2t --model transformers:/models/llava-rad --model-opt max_new_tokens=128
    medbench run --task i2t --model transformers:/models/my-vlm --model-opt "template=USER: <image>\\n{instruction} ASSISTANT:"

Loads the folder with AutoProcessor + AutoModelForImageTextToText, local files and safetensors only, and
refuses a checkpoint whose keys do not fit its architecture (medbench.models.safe_load). The prompt is the
model's chat template applied to [image, instruction] (plus an optional system message) through
``processor.apply_chat_template(..., tokenize=True)``, transformers' own path; or the `template` option
verbatim with ``{instruction}`` filled in, through ``processor(images=..., text=...)``. Images are converted to RGB (grayscale replicated) and
handed to the model's own processor. Greedy requests are batched (left padding); when sampling, every
request is generated alone after ``torch.manual_seed(request.seed)``, so a seed gives the same report
whatever the batch. Every effective setting is in `settings` and the file hashes in `weights_sha256`.
"""
from __future__ import annotations

from typing import Any

from medbench.errors import UserError
from medbench.models.base import ModelContext
from medbench.models.safe_load import (DTYPES, HashedFolder, ModelLoadError, check_loading_info, config_sha256,
                                       custom_code, first_line, folder_sha256, given, model_folder, rank_device,
                                       read_json, refuse_remote_code, torch_dtype, weight_files)
from medbench.options import Option, resolve
from medbench.records import Output, Request

DEFAULT_INSTRUCTIONS = {
    "cxr": "Write the findings and impression of the radiology report for this chest X-ray.",
    "path": "Write the pathology report for this H&E-stained histopathology image.",
}
GENERIC_INSTRUCTION = "Write the report for this medical image."


def _positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be > 0, got {value!r}")


OPTIONS = (
    Option("instruction", str, None, "the instruction for every domain (overrides instruction_cxr/instruction_path)"),
    Option("instruction_cxr", str, DEFAULT_INSTRUCTIONS["cxr"], "the instruction for chest X-rays"),
    Option("instruction_path", str, DEFAULT_INSTRUCTIONS["path"], "the instruction for pathology tiles"),
    Option("template", str, None, "a full prompt used verbatim instead of the chat template; {instruction} is "
                                  "replaced; it must contain the model's image token (e.g. <image>)"),
    Option("system", str, None, "a system message (chat template only)"),
    Option("max_new_tokens", int, 256, "most tokens generated per report", low=1, high=32768),
    Option("do_sample", bool, False, "sample (with the request's seed) instead of greedy/beam decoding"),
    Option("temperature", float, 1.0, "sampling temperature (do_sample=1 only)", check=_positive),
    Option("top_p", float, 1.0, "nucleus sampling mass (do_sample=1 only)", low=0, high=1, check=_positive),
    Option("num_beams", int, 1, "beam search width", low=1, high=64),
    Option("batch", bool, True, "batch greedy requests (sampling always runs request by request)"),
    Option("dtype", str, "auto", "weights dtype: auto is the checkpoint's own", choices=DTYPES),
    Option("trust_remote_code", bool, False, "run the folder's own Python code (auto_map); recorded"),
)


class TransformersModel(HashedFolder):
    """A local AutoModelForImageTextToText folder answering image->report requests."""

    def __init__(self, ctx: ModelContext):
        self.opts = resolve(OPTIONS, given(ctx.options), owner="model 'transformers'", flag="--model-opt")
        self.folder = model_folder(ctx.arg, "transformers", marker="config.json")
        self.name = f"transformers:{self.folder.name}"
        weight_files(self.folder, "model")
        read_json(self.folder / "config.json")
        refuse_remote_code(self.folder, custom_code(self.folder), self.opts["trust_remote_code"])
        self.device = rank_device(ctx.device)
        self.model, self.processor = self._load()
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is None or not hasattr(self.processor, "image_processor"):
            raise ModelLoadError(f"{self.folder}: AutoProcessor gave {type(self.processor).__name__}, which has no "
                                 f"image processor and tokenizer; save the model's processor into the folder")
        self.tokenizer.padding_side = "left"  # decoder-only batched generation
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.opts["template"] is None and not getattr(self.processor, "chat_template", None):
            raise ModelLoadError(f"{self.folder}: the processor has no chat template; pass the model's own prompt, "
                                 f"e.g. --model-opt \"template=USER: <image>\\n{{instruction}} ASSISTANT:\"")
        self.hashes = folder_sha256(self.folder)

    def _load(self):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        trust = self.opts["trust_remote_code"]
        try:  # the architecture first: it is what a wrong folder gets wrong
            model, info = AutoModelForImageTextToText.from_pretrained(
                self.folder, local_files_only=True, use_safetensors=True, trust_remote_code=trust,
                dtype=torch_dtype(self.opts["dtype"]), output_loading_info=True)
        except (ValueError, OSError) as e:  # transformers' "Unrecognized configuration class ..." and friends
            raise ModelLoadError(f"{self.folder}: not an image-text-to-text model transformers can load "
                                 f"(AutoModelForImageTextToText: {first_line(e)})") from None
        check_loading_info(info, self.folder)
        try:
            processor = AutoProcessor.from_pretrained(self.folder, local_files_only=True, trust_remote_code=trust)
        except (ValueError, OSError) as e:
            raise ModelLoadError(f"{self.folder}: no processor transformers can load (AutoProcessor: {first_line(e)}); "
                                 f"save the model's processor into the folder") from None
        return model.to(self.device).eval(), processor

    # ------------------------------------------------------------------ prompt

    def instruction(self, domain: str) -> str:
        if self.opts["instruction"] is not None:
            return self.opts["instruction"]
        return self.opts.get(f"instruction_{domain}") or GENERIC_INSTRUCTION

    def messages(self, domain: str, image=None) -> list[dict]:
        """The chat: an optional system message, then the user's image and instruction."""
        system = [{"role": "system", "content": [{"type": "text", "text": self.opts["system"]}]}] if self.opts["system"] else []
        picture = {"type": "image"} if image is None else {"type": "image", "image": image}
        return system + [{"role": "user", "content": [picture, {"type": "text", "text": self.instruction(domain)}]}]

    def prompt(self, domain: str) -> str:
        """The exact prompt text (before the processor expands the image token)."""
        if self.opts["template"] is not None:
            return self.opts["template"].replace("{instruction}", self.instruction(domain))
        return self.processor.apply_chat_template(self.messages(domain), add_generation_prompt=True, tokenize=False)

    # ------------------------------------------------------------------ record

    @property
    def settings(self) -> dict[str, Any]:
        """Every effective setting (options with defaults, classes, prompts, device), for the run record."""
        return {"adapter": "transformers", "folder": str(self.folder), "options": dict(self.opts),
                "model_class": type(self.model).__name__, "processor_class": type(self.processor).__name__,
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."), "device": self.device,
                "generation": self.generation_kwargs(), "config_sha256": config_sha256(self.hashes, self.folder),
                "prompts": {d: self.prompt(d) for d in DEFAULT_INSTRUCTIONS},
                "images": "converted to RGB (grayscale replicated), then the model's own processor"}

    def generation_kwargs(self) -> dict[str, Any]:
        o = self.opts
        kw = {"max_new_tokens": o["max_new_tokens"], "do_sample": o["do_sample"], "num_beams": o["num_beams"]}
        if o["do_sample"]:
            kw.update(temperature=o["temperature"], top_p=o["top_p"])
        return kw

    # ------------------------------------------------------------------ generation

    def generate(self, requests: list[Request]) -> list[Output]:
        bad = sorted({r.kind for r in requests} - {"image->report"})
        if bad:
            raise ValueError(f"{self.name} answers image->report requests only, not {bad}")
        missing = [r.sample_id for r in requests if r.image is None]
        if missing:
            raise ValueError(f"{self.name}: image->report requests without an image: {missing[:5]}")
        if self.opts["do_sample"] or not self.opts["batch"]:
            groups = [[r] for r in requests]
        else:
            groups = [requests]
        reports = [text for group in groups for text in self._generate(group)]
        return [Output(r.sample_id, report=text) for r, text in zip(requests, reports)]

    def _generate(self, requests: list[Request]) -> list[str]:
        import torch

        from medbench.features.base import to_rgb

        if self.opts["template"] is None:  # transformers' own chat path (special tokens as the template writes them)
            chats = [self.messages(r.domain, to_rgb(r.image)) for r in requests]
            inputs = self.processor.apply_chat_template(chats, add_generation_prompt=True, tokenize=True, return_dict=True,
                                                        return_tensors="pt", processor_kwargs={"padding": True})
        else:  # a raw prompt: the processor adds the tokenizer's special tokens
            inputs = self.processor(images=[[to_rgb(r.image)] for r in requests], text=[self.prompt(r.domain) for r in requests],
                                    return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        if self.opts["do_sample"]:
            torch.manual_seed(requests[0].seed)  # one request per call when sampling
        try:
            with torch.inference_mode():
                ids = self.model.generate(**inputs, **self.generation_kwargs(), pad_token_id=self.tokenizer.pad_token_id)
        except ValueError as e:  # transformers' own generation-config checks
            raise UserError(f"{self.name}: generate refused {self.generation_kwargs()}: {first_line(e)}") from None
        if not self.model.config.is_encoder_decoder:
            ids = ids[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def factory(ctx: ModelContext) -> TransformersModel:
    return TransformersModel(ctx)
