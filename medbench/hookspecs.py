"""Every extension point of medbench, in one file.

A plugin is a module (or object) with functions named like the specs below, decorated with
`medbench.hookimpl`, and announced through the entry-point group ``medbench``::

    [project.entry-points.medbench]
    mymodel = "my_package.medbench_plugin"

The built-ins register exactly this way. All "contribution" hooks are collecting hooks: every
plugin's result is gathered (pluggy returns a list of lists) and names must be unique across
plugins; a duplicate name is an error naming both distributions. The specs they return are the
dataclasses of `medbench.registry`.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("medbench")


@hookspec
def medbench_datasets():
    """Contribute datasets.

    Called once when the registry is built. Return a list of `DatasetSpec`, each with a unique
    name (e.g. ``cxr-phantom``) and a ``load(options) -> Dataset`` callable that is only called
    when the dataset is used. ``folder:PATH`` and ``manifest:FILE`` are resolved by the runner,
    not by this hook.
    """


@hookspec
def medbench_tasks():
    """Contribute task specs.

    Return a list of paths to YAML files (or already-parsed dicts) following the task schema of
    `medbench.tasks`. They are validated like the built-ins; a task from a plugin is listed and
    run exactly as a built-in task.
    """


@hookspec
def medbench_models():
    """Contribute generative models under test.

    Return a list of `ModelSpec`. ``factory(context: ModelContext) -> Model`` is called once
    per run (per process under torchrun) with the task, the dataset's train split (for baselines
    that need it), the run seed and ``--model-path``. The Model answers batches of `Request` of
    one kind with `Output` in the same order (see `medbench.models.base`).
    """


@hookspec
def medbench_metrics():
    """Contribute metric families.

    Return a list of `MetricSpec`. ``factory(context: MetricContext) -> Metric`` builds an
    accumulator (see `medbench.metrics.base`) that takes (sample, output) pairs and yields
    per-sample sufficient statistics, so CIs and paired tests never regenerate anything.
    Raise `MetricUnavailable` from the factory when the metric cannot run here (missing
    weights, missing Java...): the run records it under ``skipped`` with the reason.
    """


@hookspec
def medbench_extractors():
    """Contribute image feature extractors for the image-fidelity metrics.

    Return a list of `ExtractorSpec`. ``factory(weights: str | None) -> FeatureExtractor``
    (see `medbench.features.base`); the extractor declares its preprocessing and a weights hash
    so cached features can be keyed and recorded.
    """


@hookspec
def medbench_labelers():
    """Contribute report labelers (report text -> {observation: 1/0/-1}).

    Return a list of `LabelerSpec`, each bound to a dataset domain (``cxr``, ``path``...). The
    clinical, pair-consistency and downstream metrics pick the labeler for the run's domain.
    """


@hookspec
def medbench_downstream_models():
    """Contribute downstream models for the augmentation task.

    Return a list of `DownstreamSpec`: models trained from scratch on real and/or generated
    pairs and scored on the real test split (e.g. a small image->report generator, a
    multi-label classifier).
    """


@hookspec
def medbench_weights():
    """Contribute weights manifests (what an evaluator or model needs from the user's disk).

    Return a list of `medbench.weights.WeightsSpec`: the folder name under the weights root,
    each file with its sha256 and size, the licence and where a user gets the files. `medbench
    weights list/check` shows them; the consumer calls `medbench.weights.locate(spec)`.
    """


@hookspec
def medbench_run_start(config):
    """Called on every process when a run starts, after the run folder exists.

    ``config`` is the resolved `RunConfig`. Return value ignored.
    """


@hookspec
def medbench_run_finish(config, record, run_dir):
    """Called on rank 0 after ``run.json`` was written.

    ``record`` is the run record dict, ``run_dir`` the run folder (a Path). Use it to upload
    results, notify, or write extra artifacts. Return value ignored; exceptions are reported
    as warnings and do not fail the run.
    """
