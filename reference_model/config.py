"""MeDiM configuration: one flat dataclass, loaded from JSON in reference_model/configs/.

    from reference_model.config import MeDiMConfig, load_config
    cfg = load_config("tiny-phantom")              # a name in reference_model/configs/ or a path
    cfg = cfg.replace(num_layers=2)                 # a modified copy

Groups: backbone geometry, token space, ablations, diffusion objective, sampler defaults, training.
Paper-vs-code choices are documented in docs/decisions.md.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"

_CHOICES = {
    "arch": ("llama", "gemma"),
    "adaln_init": ("zero", "normal", "identity_gate"),
    "time_embedding": ("adaln", "none", "add"),
    "logit_offset": ("clean", "reference"),
    "reveal_schedule": ("arccos", "cosine", "linear"),
    "sampler_path": ("normalized", "reference"),
    "sampler_time": ("nominal", "mask_ratio"),
    "sampler_order": ("confidence", "left_to_right"),
    "lr_schedule": ("cosine", "cosine_restarts", "constant"),
    "attn_implementation": ("sdpa", "eager"),
    "embedding_init": ("slice", "mean", "remap"),
    "image_embedding_init": ("random", "vq"),
    "objective": ("mdlm", "ar"),
    "loss_weighting": ("elbo", "flat"),
}


@dataclass
class MeDiMConfig:
    name: str = "custom"
    # --- backbone (a transformers Llama/Gemma decoder) ---
    arch: str = "llama"
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    head_dim: int | None = None             # None: hidden_size // num_heads
    intermediate_size: int = 512
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attn_implementation: str = "sdpa"
    pretrained_path: str | None = None       # local HF checkpoint folder; truncated to num_layers
    embedding_init: str = "slice"            # pretrained table -> unified vocab (reference_model/pretrained.py):
    #   slice = keep rows 0..V-1 (the official quirk); mean = keep text rows, new rows for the rest;
    #   remap = mean, but image code k takes pretrained row pretrained_image_row_offset + k (Liquid: 256000)
    embedding_noise: float = 0.1             # new rows: mean of the pretrained rows + this * their std * N(0,1)
    pretrained_image_row_offset: int | None = None
    time_freq_dim: int = 256                 # sinusoid width of the sigma(t) embedding
    adaln_init: str = "zero"                 # zero = AdaLN-Zero (paper); normal = N(0,0.02) (reference runtime)
    # --- ablations (paper Tab. 4) ---
    causal: bool = False                     # True keeps the causal mask ("w/ causal mask")
    time_embedding: str = "adaln"            # none = "w/o timestep embedding"; add = "w/o AdaLN"
    logit_offset: str = "clean"              # reference = image read at +1, text at -1 (official code)
    # --- unified token space ---
    text_vocab_size: int = 1024              # text pieces incl. the text tokenizer's own specials
    text_pad_id: int = 0
    text_bos_id: int = 1
    image_codebook_size: int = 512
    image_grid: tuple[int, int] = (16, 16)
    text_len: int = 64
    domains: list[str] = field(default_factory=lambda: ["cxr", "path"])
    domain_token: bool = True                # one explicit condition token per domain
    size_cond_len: int = 0                   # >0: the reference's hidden "Image Size: ..." cond string (off)
    compact_cond: bool = False               # size string left-padded, pads hidden and skipped in positions:
    #                                          exactly the official variable-length cond (reference_model/official.py)
    size_cond_sizes: dict = field(default_factory=dict)  # domain -> [W, H] for the size string without an image
    # --- objective ---
    objective: str = "mdlm"                  # ar = the autoregressive control (reference_model/autoregressive.py)
    noise_eps: float = 1e-3
    loss_weighting: str = "elbo"             # elbo = MDLM's 1/t; flat = the mean over masked targets (MaskGIT)
    antithetic: bool = True
    supervise_pad: bool = True               # learn where a report ends (the reference never does)
    pad_loss_weight: float = 1.0
    p_t2i: float = 0.25                      # text clean, image noised
    p_i2t: float = 0.25                      # image clean, text noised
    p_prompt: float = 0.1                    # first prompt_len text tokens restored
    p_cond_dropout: float = 0.1              # clean condition replaced by [MASK] (trains the CFG branch)
    # --- sampler defaults ---
    sample_steps: int = 32
    reveal_schedule: str = "arccos"
    temperature: float = 1.0
    r_temp: float = 10.0
    cfg_scale: float = 5.0
    sampler_path: str = "normalized"         # reference = unnormalised exp(logits) when CFG is off
    sampler_time: str = "nominal"            # t fed to the model: the reference's linear grid or the true mask ratio
    remask_rounds: int = 0                   # correction rounds after MaskGIT: re-mask the least confident tokens
    remask_frac: float = 0.1                 # fraction of the generated positions re-masked per round
    pad_bias: float = 0.0                    # added to the text pad logit when sampling (< 0: longer reports)
    sampler_order: str = "confidence"        # which masked positions a step reveals: confidence or left_to_right
    # --- training ---
    seed: int = 0
    max_steps: int = 1000
    micro_batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    restart_t0: int = 10000                  # cosine_restarts: first cycle length (reference T_0)
    restart_t_mult: int = 2                  # cosine_restarts: cycle growth (reference T_mult)
    gradient_checkpointing: bool = False
    compile: bool = False                    # torch.compile the backbone (trainer)
    image_embedding_init: str = "random"     # vq: image-code rows = the VQ codebook, randomly projected (trainer)
    log_every: int = 10
    ckpt_every: int = 500
    max_minutes: float | None = None         # stop (and checkpoint) after this much wall-clock
    # --- data (read by reference_model.data) ---
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        self.image_grid = tuple(self.image_grid)
        self.betas = tuple(self.betas)
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"MeDiMConfig.{key}={getattr(self, key)!r}; choose one of {allowed}")
        if self.hidden_size % self.num_heads and self.head_dim is None:
            raise ValueError("hidden_size must divide by num_heads (or set head_dim)")
        if self.embedding_init == "remap" and self.pretrained_image_row_offset is None:
            raise ValueError("embedding_init='remap' needs pretrained_image_row_offset (Liquid: 256000)")
        if self.p_t2i + self.p_i2t + self.p_prompt > 1:
            raise ValueError("p_t2i + p_i2t + p_prompt must be <= 1")

    @property
    def image_len(self) -> int:
        return self.image_grid[0] * self.image_grid[1]

    @property
    def global_batch_size_per_rank(self) -> int:
        return self.micro_batch_size * self.grad_accum

    def replace(self, **changes) -> "MeDiMConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def load_config(name_or_path: str | Path) -> MeDiMConfig:
    """Load a config by name (reference_model/configs/NAME.json) or by path; unknown keys are errors."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise FileNotFoundError(f"MeDiM config {str(path)!r} not found; known configs: {known}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    names = {f.name for f in dataclasses.fields(MeDiMConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{path}: unknown MeDiM config keys {unknown}")
    return MeDiMConfig(**raw)
