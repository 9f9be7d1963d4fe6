"""Issue 14.7: --train-dataset SPEC gives the families (and baselines) a train split when the evaluated
dataset has none, as with MeDiM's flat folder dumps (medbench.run_checks.train_split)."""
import shutil
from types import SimpleNamespace

import pytest

from medbench.data.resolve import load_dataset
from medbench.errors import UserError
from medbench.run_checks import check_run, train_split


def flat_copy(tiny_folder, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (tiny_folder / "test").iterdir():
        shutil.copy(f, flat / f.name)
    return flat


def test_train_split_from_another_dataset(tiny_folder, tmp_path):
    flat = flat_copy(tiny_folder, tmp_path)
    evaluated = load_dataset(f"folder:{flat}")
    assert evaluated.split("train") == []
    own = SimpleNamespace(train_dataset=None, on_bad_sample="fail", domain=None)
    assert train_split(own, evaluated) == []
    other = SimpleNamespace(train_dataset=f"folder:{tiny_folder}", on_bad_sample="fail", domain=None)
    train = train_split(other, evaluated)
    assert len(train) == 12 and {s.split for s in train} == {"train"}
    none = SimpleNamespace(train_dataset=f"folder:{flat}", on_bad_sample="fail", domain=None)
    with pytest.raises(UserError, match="has no train split either"):
        train_split(none, evaluated)


def test_train_dataset_spec_is_checked_before_any_work(tmp_path):
    from medbench.run_config import make_run_config

    cfg = make_run_config(task="i2t", model="oracle", store=None, report=False, out=tmp_path)
    cfg.train_dataset = "cxr-phantm"
    with pytest.raises(UserError, match="Did you mean 'cxr-phantom'"):
        check_run(cfg)
