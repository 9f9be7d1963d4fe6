"""The model protocol: answer a batch of requests of one kind, in order.

    class MyModel:
        name = "my-model"
        def generate(self, requests: list[Request]) -> list[Output]: ...

Images are PIL images (any mode; saved as PNG) and reports are strings. A model must honour
``request.seed`` so that the same request gives the same output whatever the batch it came in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from medbench.records import Output, Request, Sample


@runtime_checkable
class Model(Protocol):
    name: str

    def generate(self, requests: list[Request]) -> list[Output]: ...


@dataclass
class ModelContext:
    """What a model factory gets. ``train`` is the dataset's train split (baselines use it);
    ``test`` is the evaluated split (only the `oracle` ceiling may look at it); ``model_path``
    is ``--model-path``; ``arg`` is what follows ``name:`` in ``--model name:ARG``."""

    task: Any
    domain: str
    seed: int
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)
    model_path: Path | None = None
    arg: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    image_size: int = 64
