"""Shared by the image-label metric tests: a small cxr phantom and the phantom-encoder weights to use."""
import os

import pytest

PHANTOM = {"n_train": "240", "n_val": "120", "n_test": "120"}


def encoder_options() -> dict:
    """{} for the bundled weights, {"weights": FILE} when MEDBENCH_TEST_ENCODER_WEIGHTS overrides them."""
    override = os.environ.get("MEDBENCH_TEST_ENCODER_WEIGHTS")
    if override:
        return {"weights": override}
    from medbench.features.phantom_encoder import BUNDLED_WEIGHTS

    if not BUNDLED_WEIGHTS.is_file():
        pytest.skip(f"bundled phantom-encoder weights missing ({BUNDLED_WEIGHTS}); train them with "
                    "python -m medbench.features.train_phantom_encoder")
    return {}


@pytest.fixture(scope="module")
def phantom():
    from medbench.data.resolve import load_dataset

    return load_dataset("cxr-phantom", PHANTOM)
