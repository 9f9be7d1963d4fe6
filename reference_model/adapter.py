"""One MeDiM adapter for medbench: requests -> known tokens -> MaskGIT sampler -> images and reports.

The bundled checkpoints (reference_model.bundled.MedimModel) and the official release
(reference_model.official.OfficialMedimModel) differ only in how a request becomes text ids, which size
tokens they condition on, and how sampled ids become a report; everything else — batching by kind,
per-request seeds, every sampler option (steps, cfg, temperature, r_temp, schedule, path, time, pad_bias,
remask_rounds, remask_frac), image decoding — is here, once.

    class MyCheckpoint(MedimAdapter):
        def _text_row(self, req): ...         # (ids before padding, prompt_len)
        def _size_ids(self, requests): ...    # [B, size_cond_len] ids or None
        def _report(self, ids, prompt_len, req): ...
"""
from __future__ import annotations

import torch
from PIL import Image

from medbench.records import Output, Request
from reference_model.medim_options import KIND_TASK, parse_options


class MedimAdapter:
    """Subclasses set: cfg, tokens, sampler, text_tok, image_tok, device, options, image_size."""

    name = "medim"

    @staticmethod
    def _parse_options(options: dict) -> dict:
        return parse_options(options)

    # ------------------------------------------------------------------ what a checkpoint decides

    def _text_row(self, req: Request) -> tuple[list[int], int]:
        raise NotImplementedError

    def _size_ids(self, requests: list[Request]) -> torch.Tensor | None:
        raise NotImplementedError

    def _report(self, ids: list[int], prompt_len: int, req: Request) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared

    def _image_codes(self, requests: list[Request]) -> torch.Tensor:
        from reference_model.data import image_to_tensor

        if requests[0].kind != "image->report":
            return torch.zeros(len(requests), self.tokens.image_len, dtype=torch.long)
        missing = [r.sample_id for r in requests if r.image is None]
        if missing:
            raise ValueError(f"image->report requests without an image: {missing[:5]}")
        pixels = torch.stack([image_to_tensor(r.image, self.image_tok.image_size) for r in requests])
        return self.image_tok.encode(pixels.to(self.device)).cpu()

    def sampler_kwargs(self) -> dict:
        """Every sampler option the user set (None: the checkpoint config's value)."""
        o = self.options
        return {"steps": o.get("steps"), "schedule": o.get("schedule"), "temperature": o.get("temperature"),
                "r_temp": o.get("r_temp"), "cfg_scale": o.get("cfg"), "path": o.get("path"), "time": o.get("time"),
                "remask_rounds": o.get("remask_rounds"), "remask_frac": o.get("remask_frac"),
                "pad_bias": o.get("pad_bias"), "order": o.get("order")}

    @torch.no_grad()
    def _generate_batch(self, requests: list[Request]) -> list[Output]:
        from reference_model.data import pad_text
        from reference_model.sampler import task_known_mask

        kind = requests[0].kind
        rows = [self._text_row(r) for r in requests]
        text = torch.stack([pad_text(ids, self.tokens.text_len, self.text_tok.pad_id)[0] for ids, _ in rows])
        x0 = self.tokens.make_state(text, self._image_codes(requests))
        known = task_known_mask(KIND_TASK[kind], self.tokens, len(requests), torch.tensor([p for _, p in rows]))
        cond = self.tokens.cond_ids([r.domain for r in requests], self._size_ids(requests))
        state = self.sampler.generate(x0, known, cond, seeds=[r.seed for r in requests], **self.sampler_kwargs()).cpu()
        text_ids, codes = self.tokens.split_state(state)
        outputs = [Output(sample_id=r.sample_id) for r in requests]
        if kind in ("image->report", "prompt->pair"):
            for out, ids, (_, p), r in zip(outputs, text_ids.tolist(), rows, requests):
                out.report = self._report(ids, p, r)
        if kind in ("report->image", "prompt->pair"):
            for out, img in zip(outputs, decode_images(self.image_tok, codes, requests, self.image_size, self.device)):
                out.image = img
        return outputs

    def generate(self, requests: list[Request]) -> list[Output]:
        """Outputs in request order; each request's seed fixes its result whatever the batch."""
        unknown = {r.kind for r in requests} - set(KIND_TASK)
        if unknown:
            raise ValueError(f"medim cannot answer request kinds {sorted(unknown)}; it supports {list(KIND_TASK)}")
        size = self.options.get("batch_size", 32)
        results: dict[int, Output] = {}
        for kind in KIND_TASK:  # one kind per sampler batch
            idx = [i for i, r in enumerate(requests) if r.kind == kind]
            for start in range(0, len(idx), size):
                chunk = idx[start:start + size]
                for i, out in zip(chunk, self._generate_batch([requests[i] for i in chunk])):
                    results[i] = out
        return [results[i] for i in range(len(requests))]


def decode_images(image_tok, codes: torch.Tensor, requests: list[Request], image_size: int | None,
                  device) -> list[Image.Image]:
    """VQ codes -> PIL images in each request's domain mode, resized to the dataset's size when given."""
    from reference_model.data import tensor_to_image

    images = []
    for x, r in zip(image_tok.decode(codes.to(device)).cpu(), requests):
        img = tensor_to_image(x, r.domain)
        if image_size and img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
        images.append(img)
    return images
