"""The Chameleon VQGAN: key contract with the public checkpoint, encoder parity with transformers,
shape round trips, preprocessing, and the safetensors converter on synthetic Lightning checkpoints."""
import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reference_model.chameleon_vqgan import (
    MEDIM_PAD_COLOR, ChameleonVQGAN, ChameleonVQGANConfig, load_chameleon_vqgan, preprocess_image, to_pil)
from reference_model.convert_vqgan import convert, main as convert_main

FIXTURE = Path(__file__).parent / "fixtures" / "chameleon_vqgan_keys.json"

# vqgan.yaml as laid out in the Chameleon / Liquid release (model.params with ddconfig, lossconfig, ckpt_path)
PUBLIC_YAML = """\
model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: {embed_dim}
    n_embed: {n_embed}
    ckpt_path: null
    ddconfig:
      double_z: false
      z_channels: {z_channels}
      resolution: {resolution}
      in_channels: 3
      out_ch: 3
      ch: {ch}
      ch_mult: [1, 1, 2, 2, 4]
      num_res_blocks: 2
      attn_resolutions: {attn}
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params:
        disc_start: 100000000
        codebook_weight: 1.0
"""
REAL = dict(embed_dim=256, n_embed=8192, z_channels=256, resolution=512, ch=128, attn="[]")
# the real layer structure (5 levels, f=16, 2 res blocks, mid attention) at reduced width and codebook
SMALL = dict(embed_dim=32, n_embed=64, z_channels=32, resolution=512, ch=32, attn="[]")


def small_config(**overrides) -> ChameleonVQGANConfig:
    d = dict(embed_dim=32, n_embed=64, z_channels=32, resolution=64, ch=32)
    d.update(overrides)
    return ChameleonVQGANConfig(**d)


def seeded_model(cfg, seed=0) -> ChameleonVQGAN:
    torch.manual_seed(seed)
    model = ChameleonVQGAN(cfg).eval()
    with torch.no_grad():  # a codebook on the scale of random-init latents (std ~0.2), so codes vary
        model.quantize.embedding.weight.normal_(std=0.2, generator=torch.Generator().manual_seed(seed))
    return model


def shapes(state) -> dict:
    return {k: list(v.shape) for k, v in state.items()}


def taming_keys(cfg: ChameleonVQGANConfig) -> dict:
    """Key -> shape enumerated straight from the loops of chameleon/inference/vqgan.py (Encoder, Decoder,
    VQModel), independent of our module: ResnetBlocks without temb, nin_shortcut on width change."""
    keys = {}

    def conv(name, cin, cout, k):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = [cout, cin, k, k], [cout]

    def norm(name, c):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = [c], [c]

    def resnet(name, cin, cout):
        norm(f"{name}.norm1", cin), conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout), conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{p}", c, c, 1)

    def mid(prefix, c):
        resnet(f"{prefix}.mid.block_1", c, c), attn(f"{prefix}.mid.attn_1", c), resnet(f"{prefix}.mid.block_2", c, c)

    n, ch, mult = len(cfg.ch_mult), cfg.ch, cfg.ch_mult
    conv("encoder.conv_in", cfg.in_channels, ch, 3)
    res, in_mult = cfg.resolution, (1,) + mult
    for i in range(n):
        block_in, block_out = ch * in_mult[i], ch * mult[i]
        for j in range(cfg.num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if res in cfg.attn_resolutions:
                attn(f"encoder.down.{i}.attn.{j}", block_out)
        if i != n - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
            res //= 2
    mid("encoder", block_in)
    norm("encoder.norm_out", block_in), conv("encoder.conv_out", block_in, cfg.z_channels, 3)

    block_in, res = ch * mult[-1], cfg.resolution // 2 ** (n - 1)
    conv("decoder.conv_in", cfg.z_channels, block_in, 3)
    mid("decoder", block_in)
    for i in reversed(range(n)):
        block_out = ch * mult[i]
        for j in range(cfg.num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if res in cfg.attn_resolutions:
                attn(f"decoder.up.{i}.attn.{j}", block_out)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
            res *= 2
    norm("decoder.norm_out", block_in), conv("decoder.conv_out", block_in, cfg.out_ch, 3)

    keys["quantize.embedding.weight"] = [cfg.n_embed, cfg.embed_dim]
    conv("quant_conv", cfg.z_channels, cfg.embed_dim, 1)
    conv("post_quant_conv", cfg.embed_dim, cfg.z_channels, 1)
    return keys


# ----------------------------------------------------------------------------- the key contract


@pytest.fixture(scope="module")
def fixture():
    return json.loads(FIXTURE.read_text())


def test_state_dict_matches_fixture_exactly(tmp_path, fixture):
    yaml_path = tmp_path / "vqgan.yaml"
    yaml_path.write_text(PUBLIC_YAML.format(**REAL))
    cfg = ChameleonVQGANConfig.from_yaml(yaml_path)
    assert cfg == ChameleonVQGANConfig() and cfg.to_dict() == fixture["config"]
    assert cfg.grid == (32, 32) and cfg.factor == 16
    with torch.device("meta"):
        model = ChameleonVQGAN(cfg)
    state = model.state_dict()
    assert shapes(state) == fixture["keys"]
    assert list(state) == list(fixture["keys"])  # same order as the original module registration
    assert len(state) == fixture["n_tensors"] and sum(v.numel() for v in state.values()) == fixture["n_parameters"]


def test_fixture_matches_an_independent_reading_of_the_public_source(fixture):
    assert taming_keys(ChameleonVQGANConfig(**fixture["config"])) == fixture["keys"]
    with_attn = small_config(attn_resolutions=(16,))  # attention inside levels when configured
    with torch.device("meta"):
        assert shapes(ChameleonVQGAN(with_attn).state_dict()) == taming_keys(with_attn)


def test_fixture_encoder_keys_equal_transformers_chameleon_vqvae(fixture):
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE, ChameleonVQVAEConfig

    torch.set_num_threads(1)
    hf = ChameleonVQVAE(ChameleonVQVAEConfig())  # transformers' defaults are the released vqgan.yaml (on CPU:
    # building on the meta device is slower, its normal_ init goes through torch's decompositions)
    ours = {k: v for k, v in fixture["keys"].items() if not k.startswith("decoder.")}
    assert shapes(hf.state_dict()) == ours


@pytest.mark.parametrize("attn_resolutions", [(), (16,)])
def test_encoder_parity_with_transformers(attn_resolutions):
    """Same weights, same image: transformers' ChameleonVQVAE gives the same latents and codes."""
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE, ChameleonVQVAEConfig

    torch.set_num_threads(1)
    cfg = small_config(attn_resolutions=attn_resolutions)
    ours = seeded_model(cfg)
    hf = ChameleonVQVAE(ChameleonVQVAEConfig(
        embed_dim=cfg.embed_dim, num_embeddings=cfg.n_embed, latent_channels=cfg.z_channels, resolution=cfg.resolution,
        base_channels=cfg.ch, channel_multiplier=list(cfg.ch_mult), num_res_blocks=cfg.num_res_blocks,
        attn_resolutions=list(attn_resolutions))).eval()
    encoder_side = {k: v for k, v in ours.state_dict().items() if not k.startswith("decoder.")}
    hf.load_state_dict(encoder_side, strict=True)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        hf_latents = hf.quant_conv(hf.encoder(x))
        _, _, hf_codes = hf.quantize(hf_latents)
        our_latents = ours.latents(x)
    torch.testing.assert_close(our_latents, hf_latents, rtol=1e-4, atol=1e-5)
    assert torch.equal(ours.encode(x), hf_codes.view(2, -1))
    assert len(set(ours.encode(x).flatten().tolist())) > 1


# ----------------------------------------------------------------------------- forward passes


def test_quantizer_is_nearest_neighbour_row_major():
    model = seeded_model(small_config())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    codes = model.encode(x)
    with torch.no_grad():
        z = model.latents(x)  # [2, D, 4, 4]
    flat = z.permute(0, 2, 3, 1).reshape(2, 16, -1)
    brute = torch.cdist(flat, model.quantize.embedding.weight[None].expand(2, -1, -1)).argmin(-1)
    assert codes.shape == (2, 16) and codes.dtype == torch.long and torch.equal(codes, brute)
    z_q = model.quantize.lookup(codes, model.grid)
    assert torch.equal(z_q[1, :, 2, 3], model.quantize.embedding.weight[codes[1, 2 * 4 + 3]])


def test_round_trip_small_resolution():
    model = seeded_model(small_config())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    codes = model.encode(x)
    assert codes.shape == (1, 16) and 0 <= int(codes.min()) and int(codes.max()) < 64
    image = model.decode(codes)
    assert image.shape == (1, 3, 64, 64) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1 and torch.isfinite(image).all()
    assert torch.equal(model.decode(codes), image)  # deterministic
    assert torch.equal(model.encode(x[:, :1]), model.encode(x[:, :1].expand(-1, 3, -1, -1)))  # grey replicated
    assert to_pil(image[0]).size == (64, 64)


def test_round_trip_512_to_32x32_to_512_reduced_width():
    """Real geometry (512 px, 5 levels, f=16, 2 res blocks, mid attention), channels / 4, small codebook."""
    torch.set_num_threads(1)
    model = seeded_model(ChameleonVQGANConfig(**{k: v for k, v in SMALL.items() if k != "attn"}))
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(4)) * 2 - 1
    codes = model.encode(x)
    assert model.grid == (32, 32) and codes.shape == (1, 1024)
    assert model.decode(codes).shape == (1, 3, 512, 512)


@pytest.mark.slow
def test_round_trip_512_full_width():
    """The paper-scale module (68.7 M parameters, random init) on one 512-px image (~2 min on one CPU thread)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ChameleonVQGAN().eval()
    codes = model.encode(torch.rand(1, 3, 512, 512) * 2 - 1)
    image = model.decode(codes)
    assert codes.shape == (1, 1024) and int(codes.max()) < 8192
    assert image.shape == (1, 3, 512, 512) and image.abs().max() <= 1


def test_bad_inputs_are_rejected():
    model = seeded_model(small_config())
    with pytest.raises(ValueError, match="64x64"):
        model.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B,16\]"):
        model.decode(torch.zeros(1, 15, dtype=torch.long))
    with pytest.raises(ValueError, match="must lie in"):
        model.decode(torch.full((1, 16), 64))
    with pytest.raises(ValueError, match="unknown VQGAN hyper-parameters"):
        ChameleonVQGANConfig.from_dict({"ddconfig": {"ch": 32, "channels": 3}})
    with pytest.raises(ValueError, match="double_z"):
        ChameleonVQGANConfig(double_z=True)
    with pytest.raises(ValueError, match="multiples of 32"):
        ChameleonVQGANConfig(ch=48)


# ----------------------------------------------------------------------------- preprocessing


def test_preprocess_medim_matches_the_data_pipeline():
    from reference_model.data import image_to_tensor

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 70, 3), dtype=np.uint8))
    ours = preprocess_image(image, size=64)
    torch.testing.assert_close(ours, image_to_tensor(image, 64), rtol=0, atol=1e-6)
    corner = ((ours[:, 0, 0] + 1) / 2 * 255).round().tolist()
    assert corner == list(MEDIM_PAD_COLOR)  # padded rows at the top take MeDiM's fill colour


def test_preprocess_chameleon_crops_and_whitens():
    rgba = np.zeros((60, 120, 4), dtype=np.uint8)
    rgba[:, :60] = (255, 0, 0, 255)  # opaque red left half, transparent right half
    x = preprocess_image(Image.fromarray(rgba, "RGBA"), size=32, pad_color=None, whiten_transparency=True)
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x[:, 16, 2], torch.tensor([1.0, -1.0, -1.0]), atol=0.02)  # red kept
    assert torch.allclose(x[:, 16, 29], torch.ones(3), atol=0.02)  # transparency -> white
    # shortest side 60 -> 32 gives 64x32; the centre crop keeps columns 16..47, so red ends at column 16
    assert (x[0, 16] > 0.9).sum().item() == 32 and 14 <= (x[1, 16] < -0.9).sum().item() <= 17


# ----------------------------------------------------------------------------- the converter


def write_synthetic_release(folder: Path, extra: dict | None = None, cfg_values=SMALL, seed=0) -> tuple[Path, Path, dict]:
    """A Lightning-style vqgan.ckpt of the real key names (reduced width) with loss.* tensors, and its yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    yaml_path = folder / "vqgan.yaml"
    yaml_path.write_text(PUBLIC_YAML.format(**cfg_values))
    model = seeded_model(ChameleonVQGANConfig.from_yaml(yaml_path), seed)
    state = dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    state["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4, generator=g)
    state["loss.discriminator.main.0.bias"] = torch.randn(64, generator=g)
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 64, 1, 1, generator=g)
    ckpt = {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.4.2", "state_dict": state,
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6, "params": [0, 1]}]}]}
    ckpt.update(extra or {})
    path = folder / "vqgan.ckpt"
    torch.save(ckpt, path)
    return path, yaml_path, {k: v for k, v in state.items() if not k.startswith("loss.")}


def test_convert_synthetic_lightning_checkpoint(tmp_path, monkeypatch):
    from reference_model import vq
    from reference_model.vq import sha256_file

    ckpt, yaml_path, state = write_synthetic_release(tmp_path / "release")
    out = tmp_path / "converted"
    card_path = convert(ckpt, yaml_path, out, expected_sha256=sha256_file(ckpt))
    card = json.loads(card_path.read_text())
    assert card["kind"] == "chameleon-vqgan" and card["source"]["ckpt_sha256"] == sha256_file(ckpt)
    assert card["sha256"] == sha256_file(out / card["weights"]) and card["source"]["dropped_keys"] == 3
    assert card["config"] == ChameleonVQGANConfig.from_yaml(yaml_path).to_dict()

    model = load_chameleon_vqgan(out)
    loaded = model.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert model.grid == (32, 32) and model.codebook_size == 64

    # the folder also loads through the shared factory (kind "chameleon-vqgan")
    tok = vq.load_image_tokenizer(out)
    assert isinstance(tok, ChameleonVQGAN) and isinstance(tok, vq.ImageTokenizer) and tok.sha256 == card["sha256"]

    wrong = dict(card, config=dict(card["config"], n_embed=128))
    (out / "vq.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match="does not match the chameleon-vqgan config"):
        load_chameleon_vqgan(out)
    (out / "vq.json").write_text(json.dumps(card))
    (out / card["weights"]).write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_chameleon_vqgan(out)


def test_convert_cli_and_prefixed_bare_state_dict(tmp_path, capsys):
    _, yaml_path, state = write_synthetic_release(tmp_path / "release", cfg_values=dict(SMALL, resolution=64))
    bare = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, bare)
    convert_main(["--ckpt", str(bare), "--yaml", str(yaml_path), "--out", str(tmp_path / "out")])
    assert "wrote" in capsys.readouterr().out
    assert set(load_chameleon_vqgan(tmp_path / "out").state_dict()) == set(state)


def test_convert_refuses_non_tensor_pickles(tmp_path):
    ckpt, yaml_path, _ = write_synthetic_release(tmp_path / "release", cfg_values=dict(SMALL, resolution=64),
                                                 extra={"hyper_parameters": argparse.Namespace(lr=4.5e-6)})
    with pytest.raises(ValueError, match="weights_only=True") as err:
        convert(ckpt, yaml_path, tmp_path / "out")
    assert "re-save" in str(err.value) and "vqgan.ckpt" in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="refusing to load"):
        convert_main(["--ckpt", str(ckpt), "--yaml", str(yaml_path), "--out", str(tmp_path / "out")])


def test_convert_rejects_mismatches(tmp_path):
    small = dict(SMALL, resolution=64)
    ckpt, yaml_path, state = write_synthetic_release(tmp_path / "release", cfg_values=small)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        convert(ckpt, yaml_path, tmp_path / "out", expected_sha256="0" * 64)
    other_yaml = tmp_path / "other.yaml"
    other_yaml.write_text(PUBLIC_YAML.format(**dict(small, n_embed=128)))
    with pytest.raises(ValueError, match=r"wrong shape \(1\).*quantize.embedding.weight"):
        convert(ckpt, other_yaml, tmp_path / "out")
    partial = dict(state)
    partial.pop("decoder.conv_out.weight")
    partial["encoder.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": partial}, tmp_path / "partial.ckpt")
    with pytest.raises(ValueError, match=r"missing \(1\).*decoder.conv_out.weight.*unexpected \(1\).*encoder.extra"):
        convert(tmp_path / "partial.ckpt", yaml_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="place vqgan.ckpt"):
        convert(tmp_path / "absent.ckpt", yaml_path, tmp_path / "out")
