"""Issue 13.5: every plugin's options are declared, their defaults pass their own checks, and the
run's options are checked once and reach the factories typed (medbench.run_checks)."""
import math

import pytest

from medbench.options import OptionError
from medbench.registry import registry
from medbench.run_checks import check_metric_options, check_model, resolve_device
from medbench.tasks import load_task


def all_declared():
    reg = registry()
    for kind in ("models", "metrics", "datasets", "extractors"):
        for name, entry in reg.entries[kind].items():
            for opt in entry.spec.options:
                yield kind, name, opt


def test_declared_defaults_pass_their_own_checks():
    seen = 0
    for kind, name, opt in all_declared():
        assert opt.help, (kind, name, opt.name)
        if opt.default is not None:
            assert opt.parse(opt.default) == opt.default, (kind, name, opt.name)
        seen += 1
    assert seen > 20


def test_metric_options_typed_and_merged():
    task = load_task("t2i")
    got = check_metric_options(task, "coco", {"kid_subsets": "10", "extractor": "phantom-encoder", "quick": "1"})
    assert got == {"kid_subsets": 10, "extractor": "phantom-encoder", "quick": True}


@pytest.mark.parametrize("given, words", [
    ({"kid_subsets": "0"}, ["kid_subsets=0", "≥ 1"]),
    ({"kid_subsets": "nan"}, ["must be an integer"]),
    ({"extractor": "hf:"}, ["hf: needs a local model folder"]),
    ({"label_mapping": "positive"}, ["one of pos, unc_pos"]),
    ({"skip_empty": "1"}, ["none of this run's metric families"]),  # a medim-paper option on a coco t2i run
])
def test_bad_metric_options(given, words):
    with pytest.raises(OptionError) as e:
        check_metric_options(load_task("t2i"), "coco", given)
    for w in words:
        assert w in str(e.value)


def test_medim_options_typed_and_checked():
    got = check_model("medim", "image->report", {"steps": "8", "temperature": "0.7", "schedule": "cosine"}, None)
    assert got == {"steps": 8, "temperature": 0.7, "schedule": "cosine"}
    for bad in ({"temperature": "0"}, {"remask_frac": "0"}, {"schedule": "cosin"}, {"pad_bias": "-inf"}):
        with pytest.raises(OptionError):
            check_model("medim", "image->report", bad, None)


def test_medim_model_refuses_unknown_options_itself():
    from reference_model.plugin import MedimModel

    assert MedimModel._parse_options({"steps": "4", "cfg": 1}) == {"steps": 4, "cfg": 1.0}
    with pytest.raises(OptionError, match="Did you mean 'steps'"):
        MedimModel._parse_options({"stepz": 4})
    assert math.isnan(float("nan"))  # (NaN is refused above by the declared float options)


def test_device_auto_is_cpu_without_cuda():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
