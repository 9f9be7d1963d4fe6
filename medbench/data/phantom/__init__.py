"""Phantom datasets: deterministic, procedurally generated SYNTHETIC test data (not clinical data).

`cxr-phantom` draws chest-radiograph-like images with visible findings and CheXpert-style
labelled reports; `path-phantom` draws H&E-like tiles with descriptive pathology reports.
Both are written once into the cache by `ensure_phantom` in the folder layout real data uses::

    from medbench.data.phantom import ensure_phantom
    root = ensure_phantom("cxr", size=64)   # ~/.cache/medbench/phantoms/cxr-<hash>/{train,val,test}/
"""
from medbench.data.phantom.generate import DOMAINS, ensure_phantom, phantom_root

__all__ = ["DOMAINS", "ensure_phantom", "phantom_root"]
