"""`oracle`: answers every request with the test sample's own data — the ceiling of every metric."""
from __future__ import annotations

from medbench.models.base import ModelContext
from medbench.records import Output, Request, produces


class OracleModel:
    name = "oracle"

    def __init__(self, ctx: ModelContext):
        self.by_id = {s.id: s for s in ctx.test}

    def generate(self, requests: list[Request]) -> list[Output]:
        outs = []
        for r in requests:
            s = self.by_id[r.sample_id]
            want = produces(r.kind)
            outs.append(Output(r.sample_id, image=s.load_image() if "image" in want else None,
                               report=s.report if "report" in want else None))
        return outs
