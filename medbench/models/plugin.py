"""The built-in models: the `oracle` ceiling, the `random` floor, the `retrieval` baseline, and the
adapters for competing systems: `transformers:PATH` (image -> report), `diffusers:PATH` (report -> image)
and `pair:T2I+I2T` (two-stage joint pairs). See docs/models.md.

``outputs:DIR`` (precomputed outputs of any external system) is resolved by the runner, not
registered here, because its name carries a path.
"""
from medbench.registry import ModelSpec, hookimpl


@hookimpl
def medbench_models():
    from medbench.models import diffusers_model, pair, transformers_model
    from medbench.models.oracle import OracleModel
    from medbench.models.random_model import RandomModel
    from medbench.models.retrieval import RetrievalModel

    return [
        ModelSpec("oracle", OracleModel, uses_model_path=False, description="returns the test sample's own image and report (the ceiling)"),
        ModelSpec("random", RandomModel, uses_model_path=False, description="noise images and shuffled training reports (the floor)"),
        ModelSpec("retrieval", RetrievalModel, uses_model_path=False, description="nearest training neighbour: TF-IDF for reports, pixels for images"),
        ModelSpec("transformers", transformers_model.factory, kinds=("image->report",), options=transformers_model.OPTIONS,
                  uses_model_path=False,
                  description="transformers:PATH, a local image-text-to-text model (AutoModelForImageTextToText)"),
        ModelSpec("diffusers", diffusers_model.factory, kinds=("report->image",), options=diffusers_model.OPTIONS,
                  uses_model_path=False,
                  description="diffusers:PATH, a local text-to-image DiffusionPipeline"),
        ModelSpec("pair", pair.factory, kinds=("prompt->pair",), uses_model_path=False,
                  options=pair.listed_options(), options_for=pair.pair_options,
                  description="pair:T2I+I2T, prompt -> image by the first model -> report by the second "
                              "(options t2i.KEY=V / i2t.KEY=V)"),
    ]
