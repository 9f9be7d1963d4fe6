"""MeDiM's text tokenizer: a byte-level BPE trained locally on the phantom reports.

The paper uses the Llama-2 tokenizer (spec §B.2); nothing can be downloaded here, so the tiny
checkpoint carries its own BPE, trained with the `tokenizers` library on the train-split reports
and prompts of both phantom domains. Byte-level means every string round-trips and there is no
out-of-vocabulary text.

    tok = TextTokenizer.from_file("reference_model/checkpoints/tiny-phantom/text-tokenizer.json")
    ids = tok.encode("No pleural effusion.")      # no BOS, no padding
    tok.decode([tok.bos_id] + ids + [tok.pad_id])  # -> "No pleural effusion."

Train one with ``train_text_tokenizer(texts, out_path)`` (``python -m reference_model.train_vq``
does it alongside the VQ model). `LlamaTextTokenizer` gives the same interface over the Llama-2
tokenizer.json the official MeDiM release uses (paper scale; the trainer's flat-folder data and the
official adapter both read it).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from medbench.errors import UserError

# Fixed special ids: <pad> must be 0 (MeDiM right-pads with 0 and hides unmasked 0s from attention).
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = SPECIALS


class TextTokenizer:
    """The agreed text-tokenizer interface over a `tokenizers.Tokenizer`."""

    def __init__(self, tokenizer: Tokenizer, sha256: str | None = None):
        self.tok = tokenizer
        ids = [tokenizer.token_to_id(s) for s in SPECIALS]
        if ids != [0, 1, 2, 3]:
            raise ValueError(f"text tokenizer must map {SPECIALS} to ids 0..3, got {ids}")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = ids
        self.vocab_size = tokenizer.get_vocab_size()
        self.sha256 = sha256

    @classmethod
    def from_file(cls, path: str | Path, sha256: str | None = None) -> "TextTokenizer":
        """Load text-tokenizer.json; when `sha256` is given the file must match it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"text tokenizer missing: place text-tokenizer.json (trained by "
                                    f"`python -m reference_model.train_vq --out DIR`) at {path}")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise UserError(f"{path}: sha256 mismatch (file {digest}, expected {sha256})")
        try:
            tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # tokenizers raises a plain Exception on bad JSON
            raise ValueError(f"{path}: not a valid tokenizers JSON file ({e})") from None
        return cls(tok, digest)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, skipping pad/BOS/EOS/UNK and anything outside the vocabulary."""
        keep = [int(i) for i in ids if 3 < int(i) < self.vocab_size]
        return self.tok.decode(keep, skip_special_tokens=True)


class LlamaTextTokenizer:
    """The Llama-2 tokenizer from a local tokenizer.json, with the interface reference_model expects.
    pad = <unk> = 0 (the official code pads with 0), bos = <s> = 1, eos = </s> = 2."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Llama-2 tokenizer missing: place tokenizer.json of NousResearch/Llama-2-7b-hf "
                                    f"at {path}")
        self.tok = Tokenizer.from_file(str(path))
        ids = [self.tok.token_to_id(t) for t in ("<unk>", "<s>", "</s>")]
        if ids != [0, 1, 2]:
            raise ValueError(f"{path}: expected <unk>, <s>, </s> at ids 0, 1, 2 (Llama-2), got {ids}")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 0
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=False)
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        """Text of ids < vocab, without <unk>/<s>/</s> (the official decode strips '<unk>')."""
        return self.tok.decode([int(i) for i in ids if 2 < int(i) < self.vocab_size], skip_special_tokens=True)


def train_text_tokenizer(texts: Iterable[str], out_path: str | Path, vocab_size: int = 1536,
                         min_frequency: int = 2) -> TextTokenizer:
    """Train a byte-level BPE on `texts` and save it as a tokenizers JSON file (deterministic)."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_path))
    return TextTokenizer.from_file(out_path)


def main(argv: list[str] | None = None) -> None:
    """python -m reference_model.text_tokenizer --out DIR: train on the phantom train reports + prompts."""
    import argparse
    import json

    from reference_model.data import load_samples

    ap = argparse.ArgumentParser(description="Train MeDiM's byte-level BPE on train-split reports and prompts.")
    ap.add_argument("--out", required=True, type=Path, help="folder for text-tokenizer.json")
    ap.add_argument("--datasets", nargs="+", default=["cxr-phantom", "path-phantom"])
    ap.add_argument("--vocab-size", type=int, default=1536)
    ap.add_argument("--min-frequency", type=int, default=2)
    a = ap.parse_args(argv)
    samples = load_samples(a.datasets, "train", {})
    texts = [s.report.strip() for s in samples if s.report] + [s.prompt.strip() for s in samples if s.prompt]
    tok = train_text_tokenizer(texts, a.out / "text-tokenizer.json", a.vocab_size, a.min_frequency)
    lengths = sorted(len(tok.encode(s.report)) for s in samples if s.report)
    print(json.dumps({"path": str(a.out / "text-tokenizer.json"), "vocab_size": tok.vocab_size, "sha256": tok.sha256,
                      "n_texts": len(texts), "report_tokens_p50": lengths[len(lengths) // 2],
                      "report_tokens_max": lengths[-1]}))


if __name__ == "__main__":
    main()
