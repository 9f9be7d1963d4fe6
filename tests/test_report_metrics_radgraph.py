"""F1-RadGraph: medbench's family vs radeval's F1RadGraph on a tiny DyGIE++ archive in the published layout."""
import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_report_models import WEIGHT_KINDS, build_radgraph, metric_context, parity_weights, report_pairs, run_family  # noqa: E402

from medbench.metrics.base import MetricUnavailable  # noqa: E402
from medbench.metrics.report_models import radgraph  # noqa: E402
from medbench.metrics.report_models._radeval import radeval_import  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return build_radgraph(tmp_path_factory.mktemp("weights"))


def package_cache(weights: Path, where: Path) -> Path:
    """The cache radgraph itself would have after its download: the archive extracted, plus the
    embedder name pointed at the local folder (the hub id would be fetched otherwise)."""
    model_dir = where / "radgraph-xl"
    with tarfile.open(weights / "radgraph-xl" / "radgraph-xl.tar.gz") as tar:
        tar.extractall(model_dir, filter="data")
    config = json.loads((model_dir / "config.json").read_text())
    for bert in (config["dataset_reader"]["token_indexers"]["bert"], config["model"]["embedder"]["token_embedders"]["bert"]):
        bert["model_name"] = str(weights / "radgraph-xl" / "embedder")
    (model_dir / "config.json").write_text(json.dumps(config))
    return where


@pytest.fixture(scope="module", params=WEIGHT_KINDS)
def parity(request, tmp_path_factory) -> Path:
    return parity_weights(request, tmp_path_factory, build_radgraph, ("radgraph-xl",))


def test_parity_with_radeval(parity, tmp_path):
    refs, hyps = report_pairs(14, seed=1)
    metric = radgraph.radgraph_factory(metric_context(parity, tmp_path))
    stats = run_family(metric, refs, hyps, batch=4)
    ours = metric.compute(stats)
    core = radeval_import("radeval.metrics.radgraph._vendor.core")
    ref = core.F1RadGraph(reward_level="all", model_type="radgraph-xl", model_cache_dir=str(package_cache(parity, tmp_path / "pkg")), cuda=-1)
    means, rewards, _, _ = ref(refs=refs, hyps=hyps)
    assert np.std(rewards[1]) > 1e-3, "tiny model rewards do not vary: the parity would be vacuous"
    for i, level in enumerate(radgraph.LEVELS):
        np.testing.assert_allclose(stats[level], rewards[i], atol=1e-9)
        assert ours[f"nlg.radgraph.f1_{level}"] == pytest.approx(means[i], abs=1e-9)


def test_half_loaded_archive_is_refused(weights, tmp_path):
    from medbench.weights import pin

    root = tmp_path / "w"
    shutil.copytree(weights, root)
    archive = root / "radgraph-xl" / "radgraph-xl.tar.gz"
    staging = tmp_path / "staging"
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    state = torch.load(staging / "weights.th", weights_only=True)
    state.pop(next(k for k in state if k.startswith("_ner.")))
    torch.save(state, staging / "weights.th")
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(staging.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(staging)), recursive=False)
    pin(radgraph.RADGRAPH_XL, root)
    metric = radgraph.radgraph_factory(metric_context(root, tmp_path))
    with pytest.raises(MetricUnavailable, match="half-loaded"):
        run_family(metric, *report_pairs(2))


def test_missing_embedder_file_names_it(weights, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(weights, root)
    (root / "radgraph-xl" / "embedder" / "model.safetensors").unlink()
    with pytest.raises(MetricUnavailable, match=r"radgraph-xl/embedder/model\.safetensors: missing weight file for radgraph-xl"):
        run_family(radgraph.radgraph_factory(metric_context(root, tmp_path)), *report_pairs(2))
