"""`retrieval`: the classic strong baseline — answer with the nearest training neighbour.

- report -> image: the image of the training report most similar by TF-IDF cosine;
- image -> report: the report of the nearest training image in pixel space (32×32 grayscale, L2);
- prompt -> pair: the training pair whose prompt (or first report sentence) is most similar by TF-IDF.
Ties break by training order, so results are deterministic.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
from PIL import Image

from medbench.models.base import ModelContext
from medbench.records import Output, Request, Sample

THUMB = 32


def thumbnail(image: Image.Image) -> np.ndarray:
    """A 32×32 grayscale float vector in [0, 1]: the pixel space of image retrieval."""
    g = image.convert("L").resize((THUMB, THUMB), Image.BILINEAR)
    return np.asarray(g, dtype=np.float32).ravel() / 255.0


class RetrievalModel:
    name = "retrieval"

    def __init__(self, ctx: ModelContext):
        self.train: list[Sample] = [s for s in ctx.train if s.report and s.image_path]
        if not self.train:
            raise ValueError("the retrieval model needs training pairs: the dataset's train split has none")

    @cached_property
    def _report_index(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(lowercase=True, ngram_range=(1, 2), sublinear_tf=True)
        return vec, vec.fit_transform([s.report for s in self.train])

    @cached_property
    def _prompt_index(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(lowercase=True, ngram_range=(1, 2), sublinear_tf=True)
        return vec, vec.fit_transform([s.prompt_text() for s in self.train])

    @cached_property
    def _pixels(self) -> np.ndarray:
        return np.stack([thumbnail(s.load_image()) for s in self.train])

    def _nearest_text(self, index, texts: list[str]) -> np.ndarray:
        vec, matrix = index
        sims = (vec.transform(texts) @ matrix.T).toarray()
        return sims.argmax(axis=1)

    def _nearest_image(self, images: list[Image.Image]) -> np.ndarray:
        q = np.stack([thumbnail(im) for im in images])
        d = (q**2).sum(1)[:, None] - 2 * q @ self._pixels.T + (self._pixels**2).sum(1)[None, :]
        return d.argmin(axis=1)

    def generate(self, requests: list[Request]) -> list[Output]:
        kind = requests[0].kind
        if kind == "report->image":
            hits = self._nearest_text(self._report_index, [r.report or "" for r in requests])
            return [Output(r.sample_id, image=self.train[h].load_image()) for r, h in zip(requests, hits)]
        if kind == "image->report":
            hits = self._nearest_image([r.image for r in requests])
            return [Output(r.sample_id, report=self.train[h].report) for r, h in zip(requests, hits)]
        hits = self._nearest_text(self._prompt_index, [r.prompt or "" for r in requests])
        return [Output(r.sample_id, image=self.train[h].load_image(), report=self.train[h].report)
                for r, h in zip(requests, hits)]
