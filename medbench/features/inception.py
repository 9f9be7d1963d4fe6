"""torch-fidelity's Inception-v3 (the TF-ported FID network) as a medbench extractor: `inception-v3-compat`.

Features are torch-fidelity's '2048' (pool3, for FID/KID/PRC) and 'logits_unbiased' (1008, for
IS), from the same forward pass. Weights are never downloaded: they come from torch-fidelity's
cache file (``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth``) or an
explicit ``--weights`` path, are loaded with ``torch.load(weights_only=True)`` and handed to
torch-fidelity's network (its own loader would download or unpickle). The default file must
have the sha256 prefix in its name (torch hub's convention); another file is hashed, recorded
and warned about (its FIDs are not comparable with the literature).

Preprocessing is torch-fidelity's: RGB uint8 at the native size (grayscale replicated), resized
to 299x299 inside the network by its TF1-compatible bilinear, then (x - 128) / 128.
"""
from __future__ import annotations

import pickle
import threading
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from medbench.features.base import FeatureExtractor, sha256_file, to_rgb
from medbench.weights import WeightsError

URL_BASENAME = "weights-inception-2015-12-05-6726825d.pth"  # torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3
SHA256_PREFIX = "6726825d"
FEATURE_LAYERS = ("2048", "logits_unbiased")
_build_lock = threading.Lock()


def default_weights_path() -> Path:
    """Where torch-fidelity caches the weights (respects TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / URL_BASENAME


def _network(state_dict: dict | None):
    """torch-fidelity's FeatureExtractorInceptionV3 with `state_dict` (None: random init, for tests)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    assert Path(tfi.URL_INCEPTION_V3).name == URL_BASENAME, "torch-fidelity changed its Inception weights file name"

    class _Inception(tfi.FeatureExtractorInceptionV3):
        def load_state_dict(self, sd, strict=True, assign=False):
            return None if sd is None else super().load_state_dict(sd, strict=strict, assign=assign)

    def no_download(*args, **kwargs):  # what torch-fidelity would have downloaded: the dict we loaded safely
        return state_dict

    with _build_lock, mock.patch.object(tfi, "load_state_dict_from_url", no_download):
        return _Inception("inception-v3-compat", list(FEATURE_LAYERS), feature_extractor_weights_path=None, verbose=False)


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised state dict in the real file's format (exercises loading without the weights)."""
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in _network(None).state_dict().items()}


class InceptionV3Compat(FeatureExtractor):
    name = "inception-v3-compat"
    dim = 2048
    batch_size = 8
    preprocessing = {"size": "native (must be uniform within a batch), resized to 299x299 inside the network",
                     "resize": "torch-fidelity interpolate_bilinear_2d_like_tensorflow1x",
                     "channels": "RGB; grayscale replicated to 3 channels", "value_range": "uint8 [0, 255] -> (x - 128) / 128",
                     "dtype": "uint8 input, float32 network"}

    def __init__(self, weights: str | Path | None = None):
        self.path = Path(weights) if weights else default_weights_path()
        if not self.path.is_file():
            raise FileNotFoundError(
                f"Inception-v3 weights not found: place torch-fidelity's file {URL_BASENAME!r} in "
                f"{self.path.parent if not weights else default_weights_path().parent}/ (it is the file torch-fidelity "
                f"downloads from its GitHub release v0.2.0), or pass --weights FILE. medbench never downloads it.")
        self._sha: str | None = None
        self._net = None

    @property
    def weights_sha256(self) -> str:  # hashed on first use (the file is ~100 MB)
        if self._sha is None:
            self._sha = sha256_file(self.path)
            if not self._sha.startswith(SHA256_PREFIX):
                msg = (f"{self.path}: sha256 {self._sha[:16]}... does not start with {SHA256_PREFIX}, so these are not "
                       f"torch-fidelity's Inception weights; features and FIDs are not comparable with published ones")
                if self.path.name == URL_BASENAME:
                    raise ValueError(msg + " — the file is corrupt: delete it and place a good copy")
                warnings.warn(msg, stacklevel=2)
        return self._sha

    def net(self):
        if self._net is None:
            _ = self.weights_sha256  # verify before loading
            try:
                state = torch.load(self.path, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError) as e:  # a pickle with code, or not a torch file
                raise WeightsError(f"{self.path}: refused by torch.load(weights_only=True) ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}); "
                                   f"place torch-fidelity's plain Inception state dict there") from None
            if not isinstance(state, dict) or "fc.weight" not in state:
                raise ValueError(f"{self.path}: not an Inception-v3 state dict in torch-fidelity's format (no 'fc.weight')")
            self._net = _network(state).eval()
        return self._net

    def outputs(self) -> dict[str, int]:
        return {"features": 2048, "logits": 1008}

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(to_rgb(image), dtype=np.uint8).copy()).permute(2, 0, 1)

    def forward_batch(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        pool, logits = self.net()(batch)
        return {"features": pool, "logits": logits}
