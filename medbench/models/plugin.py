"""The built-in models: the `oracle` ceiling, the `random` floor and the `retrieval` baseline.

``outputs:DIR`` (precomputed outputs of any external system) is resolved by the runner, not
registered here, because its name carries a path.
"""
from medbench.registry import ModelSpec, hookimpl


@hookimpl
def medbench_models():
    from medbench.models.oracle import OracleModel
    from medbench.models.random_model import RandomModel
    from medbench.models.retrieval import RetrievalModel

    return [
        ModelSpec("oracle", OracleModel, description="returns the test sample's own image and report (the ceiling)"),
        ModelSpec("random", RandomModel, description="noise images and shuffled training reports (the floor)"),
        ModelSpec("retrieval", RetrievalModel, description="nearest training neighbour: TF-IDF for reports, pixels for images"),
    ]
