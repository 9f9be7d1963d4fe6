"""Tiny random-initialised models of real architectures, saved in their real layout (safetensors),
so the transformers/diffusers adapters are tested on the same classes real checkpoints use.

    folder = save_tiny_llava(tmp_path / "llava")        # LlavaForConditionalGeneration + CLIP tower + Llama
    folder = save_tiny_qwen2_vl(tmp_path / "qwen2vl")   # Qwen2VLForConditionalGeneration
    folder = save_tiny_gemma3(tmp_path / "gemma3")      # Gemma3ForConditionalGeneration (MedGemma's architecture)
    folder = save_tiny_sd(tmp_path / "sd")              # StableDiffusionPipeline (UNet, VAE, CLIP text, DDIM)

The tokenizers are built offline with the `tokenizers` library (a word-level vocabulary of radiology
words plus each family's special tokens); nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

WORDS = ("the heart is enlarged normal size no pleural effusion small left right pneumothorax lungs are clear "
         "there consolidation lobe nodule edema support devices frontal chest radiograph findings impression "
         "of a an and with mild moderate possible . , : write report describe image this x-ray "
         "USER ASSISTANT user assistant model system you are radiologist").split()

LLAVA_TEMPLATE = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
                  "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n"
                  "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
                 "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}"
                 "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")

GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
                  "{% for c in m['content'] %}{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}"
                  "{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n"
                  "{% endif %}")


def word_tokenizer(special: tuple[str, ...], bos: str = "<s>", eos: str = "</s>", pad: str = "<pad>",
                   named: dict[str, str] | None = None):
    """A PreTrainedTokenizerFast over a fixed word vocabulary (WordLevel + whitespace/punctuation split);
    `named`: special tokens the processor reads as attributes (Gemma 3's boi_token, image_token, ...)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [pad, bos, eos, "<unk>", *special]
    vocab = {tok: i for i, tok in enumerate(specials + [w for w in dict.fromkeys(WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])  # saved in tokenizer.json
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token="<unk>",
                                   additional_special_tokens=list(special), extra_special_tokens=named or {})
    fast.padding_side = "left"
    return fast


def _init(seed: int):
    import torch

    torch.manual_seed(seed)


def save_tiny_llava(folder: Path, seed: int = 0, chat_template: bool = True) -> Path:
    """LLaVA-1.5 layout: CLIP ViT tower (32 px, 8 px patches: 16 image tokens) + MLP projector + Llama."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = word_tokenizer(("<image>",))
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default", projector_hidden_act="gelu")
    _init(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                               tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE if chat_template else None)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def save_tiny_qwen2_vl(folder: Path, seed: int = 0) -> Path:
    """Qwen2-VL layout: its ViT (14 px patches, 2×2 merge, 56×56 images: 4 image tokens) + Qwen2 with M-RoPE."""
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor,
                              Qwen2VLVideoProcessor)

    tok = word_tokenizer(("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                          "<|video_pad|>"), bos="<|endoftext|>", eos="<|im_end|>")
    ids = tok.convert_tokens_to_ids
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    vision = dict(depth=2, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                           video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                           vision_end_token_id=ids("<|vision_end|>"))
    _init(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                            temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                            temporal_patch_size=2)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                 chat_template=QWEN_TEMPLATE)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def save_tiny_gemma3(folder: Path, seed: int = 0) -> Path:
    """Gemma 3 / MedGemma layout: SigLIP tower (32 px, 8 px patches) pooled to 4 image tokens + Gemma 3 text."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor,
                              Gemma3TextConfig, SiglipVisionConfig)

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = word_tokenizer(("<start_of_turn>", "<end_of_turn>", *named.values()), bos="<bos>", eos="<eos>", named=named)
    ids = tok.convert_tokens_to_ids
    text = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                            sliding_window=64, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id)
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=32, patch_size=8)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
                          image_token_index=ids("<image_soft_token>"))
    _init(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok,
                                chat_template=GEMMA_TEMPLATE, image_seq_length=4)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def save_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """Stable-Diffusion layout: UNet2DConditionModel + AutoencoderKL + CLIPTextModel + CLIP tokenizer + DDIM.

    The VAE has two blocks (scale factor 2) and the UNet an 16×16 latent: 32×32 RGB images."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = word_tokenizer((), bos="<|startoftext|>", eos="<|endoftext|>", pad="<|endoftext|>")
    tok.padding_side = "right"
    tok.model_max_length = 16
    _init(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                pad_token_id=tok.pad_token_id, projection_dim=16))
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=4, sample_size=32)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return Path(folder)


# ----------------------------------------------------------------------------- running them

def run_medbench(out: Path, *args: str) -> dict:
    """`medbench run ... --out OUT` in this process (fast settings); returns the run.json."""
    import json

    from medbench.cli import main

    assert main(["run", *args, "--out", str(out), "--store", "", "--no-report", "--bootstrap", "0"]) == 0
    records = list(Path(out).glob("*/run.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def outputs_of(out: Path) -> dict[str, bytes]:
    """The generated files of the one run under OUT (reports and PNGs), by file name."""
    folders = list(Path(out).glob("*/outputs"))
    assert len(folders) == 1, folders
    return {p.name: p.read_bytes() for p in sorted(folders[0].iterdir()) if p.suffix in (".txt", ".png")}


def run_medbench_refused(capsys, out: Path, *args: str) -> str:
    """`medbench run ...` that must be refused as a user error: exit 2 and one line on stderr (returned)."""
    from medbench.cli import main

    capsys.readouterr()
    assert main(["run", *args, "--out", str(out), "--store", "", "--no-report", "--bootstrap", "0"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("medbench:")]
    assert len(lines) == 1, lines
    return lines[0]
