"""`random`: the floor. Uniform noise images of the domain's size and mode, and a report drawn
at random from the training reports (so text metrics see fluent but unrelated text)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from medbench.models.base import ModelContext
from medbench.records import Output, Request, produces


class RandomModel:
    name = "random"

    def __init__(self, ctx: ModelContext):
        train = [s for s in ctx.train if s.report]
        if not train:
            raise ValueError("the random model needs training reports: the dataset's train split is empty")
        self.reports = [s.report for s in train]
        ref = next((s for s in ctx.train if s.image_path), None)
        self.mode, self.size = ("L", (ctx.image_size, ctx.image_size)) if ref is None else _mode_size(ref)

    def generate(self, requests: list[Request]) -> list[Output]:
        outs = []
        for r in requests:
            rng = np.random.default_rng(r.seed)
            want = produces(r.kind)
            image = report = None
            if "image" in want:
                shape = (self.size[1], self.size[0]) + ((3,) if self.mode == "RGB" else ())
                image = Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=self.mode)
            if "report" in want:
                report = self.reports[int(rng.integers(len(self.reports)))]
            outs.append(Output(r.sample_id, image=image, report=report))
        return outs


def _mode_size(sample) -> tuple[str, tuple[int, int]]:
    im = sample.load_image()
    return ("RGB" if im.mode not in ("L", "I", "I;16") else "L"), im.size
