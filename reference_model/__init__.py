"""MeDiM reference model: masked discrete diffusion on a transformers decoder backbone.

config (MeDiMConfig) -> tokens (TokenSpace) -> backbone (MeDiMBackbone) -> diffusion (MaskedDiffusion)
-> sampler (MaskGITSampler) -> train (python -m reference_model.train); tokenizers in vq.py /
text_tokenizer.py, token data in data.py, the medbench plugin in plugin.py. Imports stay lazy.
"""
