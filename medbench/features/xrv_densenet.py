"""`xrv-densenet121`: torchxrayvision's chest X-ray DenseNet-121 ('all' weights) from a local file.

    ex = XRVDenseNet121()                 # <weights root>/xrv-densenet121/densenet121-res224-all.safetensors
    feats = ex.features(images)           # (N, 1024) float64: model.features2 (ReLU + global average pool)

The network is ``torchxrayvision.models.DenseNet`` itself (weights=None, so it downloads nothing),
built with the architecture read off the state dict (growth rate, block sizes, initial features,
classes, input channels: the published file is DenseNet-121, (6, 12, 24, 16), 18 classes, 1 channel)
and loaded strictly. torchxrayvision ships its weights as a pickled module; medbench reads only a
safetensors state dict converted from it once (docs/image-metrics.md).

Preprocessing is torchxrayvision's own pipeline, called from the package: grayscale (RGB averaged
over channels, as its README does), ``xrv.utils.normalize(img, maxval)`` to [-1024, 1024] (maxval
255 for 8-bit, 65535 for 16-bit images), ``XRayCenterCrop`` (square crop of the long side) and
``XRayResizer(224)`` (skimage resize, mode='constant', preserve_range), float32, 1 channel.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

from medbench.features.base import FeatureExtractor
from medbench.features.field_weights import XRV_DENSENET121, XRV_FILE, combined_sha256, find

RESOLUTION = 224
PUBLISHED = {"growth_rate": 32, "block_config": (6, 12, 24, 16), "num_init_features": 64, "bn_size": 4,
             "num_classes": 18, "in_channels": 1}


def architecture(state: dict[str, torch.Tensor]) -> dict:
    """DenseNet constructor arguments implied by a state dict's tensor names and shapes."""
    try:
        conv0 = state["features.conv0.weight"]
        blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"features\.denseblock(\d+)\.", k))})
        config = tuple(len({m.group(1) for k in state if (m := re.match(rf"features\.denseblock{b}\.denselayer(\d+)\.", k))})
                       for b in blocks)
        growth = int(state["features.denseblock1.denselayer1.conv2.weight"].shape[0])
        bn_size = int(state["features.denseblock1.denselayer1.conv1.weight"].shape[0]) // growth
        return {"growth_rate": growth, "block_config": config, "num_init_features": int(conv0.shape[0]),
                "bn_size": bn_size, "num_classes": int(state["classifier.weight"].shape[0]), "in_channels": int(conv0.shape[1])}
    except (KeyError, IndexError, ZeroDivisionError) as e:
        raise ValueError(f"not a torchxrayvision DenseNet state dict (no {e})") from None


def load_xrv_densenet(path) -> tuple["torch.nn.Module", dict]:
    """(xrv DenseNet with the file's weights, its architecture); a key or shape mismatch raises ValueError."""
    import torchxrayvision as xrv
    from safetensors.torch import load_file

    state = load_file(str(path))
    state.pop("op_threshs", None)  # a calibration buffer some saved modules carry; medbench uses raw logits
    try:
        arch = architecture(state)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    model = xrv.models.DenseNet(weights=None, op_threshs=None, **arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: state dict does not fit torchxrayvision's DenseNet ({str(e).splitlines()[0]})") from None
    return model.eval(), arch


def xrv_input(image: Image.Image) -> np.ndarray:
    """torchxrayvision's preprocessing of one PIL image -> (1, 224, 224) float32 in [-1024, 1024]."""
    import torchxrayvision as xrv

    if image.mode in ("I;16", "I;16B", "I;16L"):
        arr, maxval = np.asarray(image, dtype=np.float64), 65535.0
    elif image.mode in ("L", "RGB"):
        arr, maxval = np.asarray(image, dtype=np.float64), 255.0
    else:
        arr, maxval = np.asarray(image.convert("RGB"), dtype=np.float64), 255.0
    img = xrv.utils.normalize(arr, maxval)
    if img.ndim == 3:
        img = img.mean(2)  # torchxrayvision's README: colour images averaged to one channel
    img = xrv.datasets.XRayCenterCrop()(img[None, ...])
    return xrv.datasets.XRayResizer(RESOLUTION)(img)


class XRVDenseNet121(FeatureExtractor):
    name = "xrv-densenet121"
    batch_size = 16
    preprocessing = {"library": "torchxrayvision", "channels": "1 (RGB averaged, as torchxrayvision's README)",
                     "value_range": "xrv.utils.normalize: (2 * x / maxval - 1) * 1024, maxval 255 (8-bit) or 65535 (16-bit)",
                     "crop": "XRayCenterCrop (square, long side cropped)",
                     "size": f"XRayResizer({RESOLUTION}) (skimage.transform.resize, mode='constant', preserve_range)",
                     "features": "model.features2: ReLU(features) -> adaptive average pool -> 1024-d", "dtype": "float32"}

    def __init__(self, weights_root: str | None = None):
        self.found = find(XRV_DENSENET121, weights_root)
        self.path = self.found.path(XRV_FILE)
        self.weights_sha256 = combined_sha256(self.found)
        self._model = None
        self.arch: dict | None = None
        self.dim = 1024

    def net(self):
        if self._model is None:
            self._model, self.arch = load_xrv_densenet(self.path)
            self.dim = int(self._model.classifier.in_features)
        return self._model

    def outputs(self) -> dict[str, int]:
        self.net()  # the width depends on the file's architecture
        return {"features": self.dim}

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(xrv_input(image))

    def forward_batch(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": self.net().features2(batch)}

    def card(self) -> dict:
        self.net()
        return super().card() | {"architecture": {k: list(v) if isinstance(v, tuple) else v for k, v in self.arch.items()},
                                 "published_architecture": self.arch == PUBLISHED, "weights": self.found.provenance()}
