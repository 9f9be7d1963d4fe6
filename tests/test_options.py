"""medbench.options: typed, range-checked declared options; unknown keys refused with a hint."""
from pathlib import Path

import pytest

from medbench.options import Option, OptionError, resolve, resolve_shared

STEPS = Option("steps", int, 16, "sampler steps", low=1, high=4096)
TEMP = Option("temperature", float, 1.0, "softmax temperature", low=0.0)
GREEDY = Option("greedy", bool, False, "argmax decoding")
MODE = Option("time", str, "nominal", "time grid", choices=("nominal", "mask_ratio"))
PATH = Option("weights", Path, None, "a weights file")
DECLARED = (STEPS, TEMP, GREEDY, MODE, PATH)


def r(given):
    return resolve(DECLARED, given, owner="model 'toy'", flag="--model-opt")


def test_defaults_and_typed_values():
    assert r({}) == {"steps": 16, "temperature": 1.0, "greedy": False, "time": "nominal", "weights": None}
    got = r({"steps": "8", "temperature": "0.5", "greedy": "yes", "time": "mask_ratio", "weights": "~/w.pt"})
    assert got["steps"] == 8 and got["temperature"] == 0.5 and got["greedy"] is True
    assert got["weights"] == Path("~/w.pt").expanduser()
    assert r({"steps": 8.0, "greedy": True})["steps"] == 8  # Python values from the API


@pytest.mark.parametrize("given, words", [
    ({"stepz": "4"}, ["--model-opt stepz", "Did you mean 'steps'?", "Known: greedy, steps, temperature, time, weights"]),
    ({"steps": "0"}, ["steps=0", "must be ≥ 1"]),
    ({"steps": "1.5"}, ["must be an integer"]),
    ({"steps": True}, ["must be an integer"]),
    ({"temperature": "nan"}, ["finite"]),
    ({"temperature": "inf"}, ["finite"]),
    ({"temperature": "-1"}, ["must be ≥ 0"]),
    ({"greedy": "maybe"}, ["boolean"]),
    ({"time": "mask-ratio"}, ["one of nominal, mask_ratio", "did you mean 'mask_ratio'?"]),
    ({"weights": ""}, ["must be a path"]),
])
def test_bad_values_are_refused_in_one_line(given, words):
    with pytest.raises(OptionError) as e:
        r(given)
    msg = str(e.value)
    assert "\n" not in msg and "model 'toy'" in msg
    for w in words:
        assert w in msg


def test_shared_options_go_to_the_families_that_declare_them():
    groups = {"image.fidelity": (Option("extractor", str, "phantom-encoder"),), "nlg.medim": (GREEDY,)}
    got = resolve_shared(groups, {"extractor": "inception"}, flag="--metric-opt")
    assert got == {"image.fidelity": {"extractor": "inception"}, "nlg.medim": {"greedy": False}}
    with pytest.raises(OptionError, match="none of this run's metric families"):
        resolve_shared(groups, {"bogus": "1"}, flag="--metric-opt")


def test_describe_lists_type_range_and_default():
    assert STEPS.describe() == "steps=int in [1, 4096] (default 16)  sampler steps"
    assert MODE.describe().startswith("time=nominal|mask_ratio (default nominal)")
