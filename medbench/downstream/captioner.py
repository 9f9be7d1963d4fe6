"""A small image -> report generator trained from scratch on CPU (the R2Gen stand-in).

A three-layer strided CNN turns the image into a grid of (size/8)^2 feature tokens; a nanoGPT-style
causal transformer reads them as a prefix, then the report's words (prefix-LM: image tokens, <bos>,
w1 ... wn, trained to predict w1 ... wn <eos>). The word-level vocabulary is built from the arm's
training reports (lowercased words and the punctuation . , ; :). Decoding is greedy with a KV cache::

    cap = ReportCaptioner(CaptionerConfig())
    reports = cap.fit_predict(train_set, test_images, seed=0, steps=400, batch_size=32)  # list[str]
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from medbench.downstream.contract import TrainSet
from medbench.downstream.classifier import batch_indices, cosine_lr, to_float

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[.,;:]")


@dataclass
class CaptionerConfig:
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    max_len: int = 96  # report tokens (words + punctuation), longer reports are truncated
    dropout: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 1e-2

    @classmethod
    def from_options(cls, options: dict | None) -> "CaptionerConfig":
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(options or {}) - set(types))
        if unknown:
            raise ValueError(f"unknown captioner option(s) {unknown}; known: {sorted(types)}")
        return cls(**{k: (float if types[k] == "float" else int)(v) for k, v in (options or {}).items()})


# ----------------------------------------------------------------------------- vocabulary

def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class Vocab:
    """Word-level vocabulary over the training reports (every word seen becomes a token)."""

    def __init__(self, reports: list[str]):
        counts = Counter(w for r in reports for w in words(r))
        self.itos = list(SPECIALS) + sorted(counts, key=lambda w: (-counts[w], w))
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_len: int) -> list[int]:
        return [self.stoi.get(w, UNK) for w in words(text)][:max_len]

    def decode(self, ids: list[int]) -> str:
        out: list[str] = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        text = " ".join(out)
        text = re.sub(r" ([.,;:])", r"\1", text)
        return re.sub(r"(^|[.] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


# ----------------------------------------------------------------------------- model

class Block(nn.Module):
    """Pre-norm transformer block; `cache` holds this layer's (k, v) for incremental decoding."""

    def __init__(self, d: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        causal = True
        if cache is not None:
            if cache:  # incremental step: one new query attends to every cached position
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
                causal = False
            cache[:] = [k, v]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # no attention dropout: costly on CPU
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CaptionNet(nn.Module):
    def __init__(self, cfg: CaptionerConfig, channels: int, size: int, vocab_size: int):
        super().__init__()
        d = cfg.d_model
        self.encoder = nn.Sequential(nn.Conv2d(channels, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                     nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, d, 3, 2, 1))
        self.cond = nn.Linear(d, d)  # the pooled image vector, added to every word embedding
        self.img_pos = nn.Parameter(torch.zeros(1, (-(-size // 8)) ** 2, d))
        self.tok_emb = nn.Embedding(vocab_size, d)
        self.pos_emb = nn.Embedding(cfg.max_len + 1, d)
        self.blocks = nn.ModuleList(Block(d, cfg.n_head, cfg.dropout) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying, as nanoGPT
        for m in self.modules():  # nanoGPT's init: small normal weights, zero biases
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prefix tokens (b, P, d), conditioning vector (b, 1, d))."""
        grid = self.encoder(to_float(images)).flatten(2).transpose(1, 2)
        return grid + self.img_pos, self.cond(grid.mean(1, keepdim=True))

    def embed(self, tokens: torch.Tensor, start: int, cond: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(start, start + tokens.shape[1])
        return self.tok_emb(tokens) + self.pos_emb(pos) + cond

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits for every text position (tokens start with <bos>)."""
        prefix, cond = self.encode(images)
        x = torch.cat([prefix, self.embed(tokens, 0, cond)], 1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, -tokens.shape[1]:]))

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_len: int) -> list[list[int]]:
        caches: list[list] = [[] for _ in self.blocks]
        b = images.shape[0]
        prefix, cond = self.encode(images)
        x = torch.cat([prefix, self.embed(torch.full((b, 1), BOS), 0, cond)], 1)
        out = torch.zeros(b, 0, dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        for t in range(max_len):
            for block, cache in zip(self.blocks, caches):
                x = block(x, cache)
            logits = self.head(self.ln_f(x[:, -1]))
            logits[:, [PAD, BOS]] = float("-inf")
            nxt = logits.argmax(-1).masked_fill(done, PAD)
            out = torch.cat([out, nxt[:, None]], 1)
            done |= nxt == EOS
            if done.all() or t + 1 == max_len:
                break
            x = self.embed(nxt[:, None], t + 1, cond)
        return out.tolist()


# ----------------------------------------------------------------------------- training

class ReportCaptioner:
    name = "captioner"
    kind = "report"

    def __init__(self, config: CaptionerConfig | None = None):
        self.config = config or CaptionerConfig()

    def fit_predict(self, train: TrainSet, test_images: torch.Tensor, *, seed: int, steps: int,
                    batch_size: int) -> list[str]:
        if len(train) == 0:
            raise ValueError("captioner: empty training set")
        cfg = self.config
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        vocab = Vocab(train.reports)
        seqs = [[BOS] + vocab.encode(r, cfg.max_len) + [EOS] for r in train.reports]
        _, channels, size, _ = train.images.shape
        net = CaptionNet(cfg, channels, size, len(vocab))
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        net.train()
        for step, idx in enumerate(batch_indices(len(train), steps, batch_size, gen)):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, steps, cfg.lr)
            rows = [seqs[i] for i in idx.tolist()]
            width = max(len(r) for r in rows)
            tokens = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
            logits = net(train.images[idx], tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=PAD)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        ids = [row for i in range(0, len(test_images), 128) for row in net.greedy(test_images[i:i + 128], cfg.max_len + 1)]
        return [vocab.decode(row) for row in ids]


def make_captioner(options: dict | None = None) -> ReportCaptioner:
    return ReportCaptioner(CaptionerConfig.from_options(options))
