"""Tiny random-initialised models of the real report-metric architectures, in the real file layouts.

Each builder writes ``<root>/<spec name>/...`` exactly as medbench's weights manifests expect the
published files (same transformers classes and file names, shrunk configs, vocabularies trained on
a few radiology sentences with the `tokenizers` library), then pins them (`medbench weights pin`)
because they are not the published bytes::

    root = build_chexbert(tmp_path / "weights")      # -> weights/chexbert/{chexbert.pth, bert-base-uncased/...}
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from report_sentences import SENTENCES

SPECIALS_BERT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CORPUS = SENTENCES + [s.upper() for s in SENTENCES[:5]] + ["none", "normal study", ""]


def _wordpiece_vocab(folder: Path, vocab_size: int = 400) -> int:
    """Train a lower-cased WordPiece vocabulary; writes vocab.txt, returns its size."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(CORPUS, vocab_size=vocab_size, special_tokens=SPECIALS_BERT, min_frequency=1)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_model(str(folder))
    return len((folder / "vocab.txt").read_text().splitlines())


def _pin(root: Path, name: str) -> None:
    from medbench.weights import pin
    from medbench.metrics.report_models import weights_specs

    spec = next(s for s in weights_specs.ALL if s.name == name)
    pin(spec, root)


def build_chexbert(root: Path, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    """chexbert.pth (a dict with model_state_dict, keys prefixed 'module.' as the published file) +
    bert-base-uncased/{config.json, vocab.txt, tokenizer_config.json}."""
    from transformers import BertConfig, BertModel

    folder = Path(root) / "chexbert"
    bert_dir = folder / "bert-base-uncased"
    n_vocab = _wordpiece_vocab(bert_dir)
    config = BertConfig(vocab_size=n_vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=512, initializer_range=0.5)
    config.save_pretrained(bert_dir)
    (bert_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    torch.manual_seed(seed)
    labeler = torch.nn.Module()
    labeler.bert = BertModel(config)
    labeler.linear_heads = torch.nn.ModuleList([torch.nn.Linear(hidden, 4) for _ in range(13)] + [torch.nn.Linear(hidden, 2)])
    for head in labeler.linear_heads:  # large weights: labels that vary with the report
        torch.nn.init.normal_(head.weight, std=3.0)
    state = {f"module.{k}": v for k, v in labeler.state_dict().items()}
    torch.save({"model_state_dict": state, "epoch": 0}, folder / "chexbert.pth")
    _pin(root, "chexbert")
    return Path(root)


def build_bertscore_distilbert(root: Path, seed: int = 0, hidden: int = 32) -> Path:
    """A 6-layer DistilBertForMaskedLM (the published checkpoint's class) + its WordPiece tokenizer."""
    from transformers import DistilBertConfig, DistilBertForMaskedLM, DistilBertTokenizerFast

    folder = Path(root) / "bertscore-distilbert-base-uncased"
    n_vocab = _wordpiece_vocab(folder)
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=n_vocab, dim=hidden, n_layers=6, n_heads=2, hidden_dim=2 * hidden, initializer_range=0.2)
    DistilBertForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    DistilBertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=512).save_pretrained(folder)
    _pin(root, "bertscore-distilbert-base-uncased")
    return Path(root)


def build_bertscore_distilroberta(root: Path, seed: int = 0, hidden: int = 32) -> Path:
    """A 6-layer RobertaForMaskedLM + a byte-level BPE tokenizer (vocab.json, merges.txt, tokenizer.json)."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaConfig, RobertaForMaskedLM

    folder = Path(root) / "bertscore-distilroberta-base"
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=600, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    bpe.save_model(str(folder))
    bpe.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "RobertaTokenizer", "model_max_length": 512, "bos_token": "<s>", "eos_token": "</s>",
        "cls_token": "<s>", "sep_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}))
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=hidden, num_hidden_layers=6, num_attention_heads=2,
                           intermediate_size=2 * hidden, max_position_embeddings=514, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2, type_vocab_size=1, initializer_range=0.2)
    RobertaForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    _pin(root, "bertscore-distilroberta-base")
    return Path(root)


def report_pairs(n: int = 24, seed: int = 0) -> tuple[list[str], list[str]]:
    """(references, hypotheses): 1-3 shared radiology sentences each; hypothesis 5 is empty."""
    import random

    rng = random.Random(seed)
    refs = [" ".join(rng.sample(SENTENCES, rng.randint(1, 3))) for _ in range(n)]
    hyps = [" ".join(rng.sample(SENTENCES, rng.randint(1, 3))) for _ in range(n)]
    if n > 5:
        hyps[5] = ""
    if n > 6:
        hyps[6] = refs[6]
    return refs, hyps


def scored_pairs(refs: list[str], hyps: list[str]):
    from medbench.metrics.base import Scored
    from medbench.records import Output, Request, Sample

    out = []
    for i, (r, h) in enumerate(zip(refs, hyps)):
        s = Sample(id=f"s{i}", patient_id=f"p{i // 2}", domain="cxr", split="test", image_path=None, report=r)
        out.append(Scored(s, Request("image->report", s.id, i, "cxr"), Output(s.id, report=h)))
    return out


def metric_context(root: Path, tmp: Path, **options):
    from medbench.metrics.base import MetricContext

    return MetricContext(task=None, domain="cxr", protocol="coco", seed=0, cache_dir=tmp,
                         options={"weights_root": str(root), **options})


def run_family(metric, refs, hyps, batch: int = 5) -> dict:
    pairs = scored_pairs(refs, hyps)
    for i in range(0, len(pairs), batch):
        metric.update(pairs[i:i + batch])
    return metric.stats()


RADGRAPH_ENTITIES = ("ANAT-DP", "OBS-DP", "OBS-U", "OBS-DA")
RADGRAPH_RELATIONS = ("modify", "located_at", "suggestive_of")


def radgraph_config(hub_id: str, hidden_dims: int = 16, feature_size: int = 8) -> dict:
    """A DyGIE++ config.json in the layout of the published RadGraph archives (dygiepp's template), shrunk."""
    bert = {"type": "pretrained_transformer_mismatched", "model_name": hub_id, "max_length": 512}
    return {
        "dataset_reader": {"type": "dygie", "max_span_width": 8, "token_indexers": {"bert": bert}},
        "model": {"type": "dygie", "embedder": {"token_embedders": {"bert": dict(bert)}},
                  "feature_size": feature_size, "max_span_width": 8, "target_task": "relation",
                  "feedforward_params": {"num_layers": 2, "hidden_dims": hidden_dims, "dropout": 0.0},
                  "initializer": {"regexes": [["_span_width_embedding.weight", {"type": "xavier_normal"}]]},
                  "module_initializer": {"regexes": [[".*weight", {"type": "xavier_normal"}]]},
                  "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
                  "modules": {"coref": {"spans_per_word": 0.3, "max_antecedents": 100, "coref_prop": 0}, "ner": {},
                              "relation": {"spans_per_word": 0.5},
                              "events": {"trigger_spans_per_word": 0.3, "argument_spans_per_word": 0.8,
                                         "loss_weights": {"trigger": 1.0, "arguments": 0.5}}}},
    }


def build_radgraph(root: Path, model_type: str = "radgraph-xl", seed: int = 0, hidden: int = 32) -> Path:
    """<model_type>.tar.gz (config.json, vocabulary/, weights.th: a DyGIE++ model built by radeval's own
    vendored classes, as RadGraph builds it) + embedder/ (the BERT folder its config names)."""
    import tarfile

    from transformers import BertConfig, BertModel

    from medbench.metrics.report_models._radeval import radeval_import

    folder = Path(root) / model_type
    emb_dir = folder / "embedder"
    n_vocab = _wordpiece_vocab(emb_dir)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=n_vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=2 * hidden, initializer_range=0.3)).save_pretrained(emb_dir, safe_serialization=True)
    (emb_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512,
                                                               "tokenizer_class": "BertTokenizer"}))
    data = radeval_import("radeval.metrics.radgraph._vendor.allennlp.data")
    emb = radeval_import("radeval.metrics.radgraph._vendor.allennlp.modules.token_embedders")
    tfe = radeval_import("radeval.metrics.radgraph._vendor.allennlp.modules.text_field_embedders")
    dygie = radeval_import("radeval.metrics.radgraph._vendor.dygie.models.dygie")
    vocab = data.Vocabulary()
    vocab.add_tokens_to_namespace(["", *RADGRAPH_ENTITIES], f"{model_type}__ner_labels")
    vocab.add_tokens_to_namespace(list(RADGRAPH_RELATIONS), f"{model_type}__relation_labels")
    config = radgraph_config("medbench-tiny/embedder")
    embedder = tfe.BasicTextFieldEmbedder({"bert": emb.PretrainedTransformerMismatchedEmbedder(model_name=str(emb_dir), max_length=512)})
    kwargs = {k: copy.deepcopy(v) for k, v in config["model"].items()  # DyGIE pops its module params in place
              if k not in ("type", "embedder", "initializer", "module_initializer")}
    model = dygie.DyGIE(vocab=vocab, embedder=embedder, **kwargs)
    for name, p in model.named_parameters():  # large random scorer weights: entities and relations that vary
        if "_embedder" not in name:
            torch.nn.init.normal_(p, std=0.5)
    staging = folder / "staging"
    vocab.save_to_files(str(staging / "vocabulary"))
    torch.save(model.state_dict(), staging / "weights.th")
    (staging / "config.json").write_text(json.dumps(config, indent=1))
    with tarfile.open(folder / f"{model_type}.tar.gz", "w:gz") as tar:
        for path in sorted(staging.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(staging)), recursive=False)
    shutil.rmtree(staging)
    _pin(root, model_type)
    return Path(root)


def parity_weights(request, tmp_path_factory, build, spec_names: tuple[str, ...]) -> Path:
    """Weights for a parity test: the tiny models ("tiny"), or the user's real files ("real", marked
    ``realweights``: $MEDBENCH_REAL_WEIGHTS or $MEDBENCH_WEIGHTS, skipped when they are not there)."""
    import os

    if request.param == "tiny":
        return build(tmp_path_factory.mktemp("weights"))
    from medbench.metrics.report_models import weights_specs
    from medbench.weights import WeightsError, locate

    root = os.environ.get("MEDBENCH_REAL_WEIGHTS") or os.environ.get("MEDBENCH_WEIGHTS")
    if not root:
        pytest.skip("realweights: set MEDBENCH_REAL_WEIGHTS (or MEDBENCH_WEIGHTS) to a folder with the published files")
    for name in spec_names:
        try:
            found = locate(next(s for s in weights_specs.ALL if s.name == name), root)
        except WeightsError as e:
            pytest.skip(f"realweights: {e}")
        if found.pinned:
            pytest.skip(f"realweights: {name} under {root} is a local pin, not the published files")
    return Path(root)


WEIGHT_KINDS = ["tiny", pytest.param("real", marks=pytest.mark.realweights)]


RATE_TYPES = ("ABNORMALITY", "ANATOMY", "DISEASE", "NON-ABNORMALITY", "NON-DISEASE")


def build_ratescore(root: Path, seed: int = 0, hidden: int = 32) -> Path:
    """RaTE-NER-Deberta (DebertaV2ForTokenClassification, B-/I- labels of the five RaTEScore types, a
    Unigram tokenizer.json with [CLS]/[SEP]) + BioLORD-2023-C (MPNetModel, WordPiece tokenizer), shrunk."""
    from tokenizers import BertWordPieceTokenizer, SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import DebertaV2Config, DebertaV2ForTokenClassification, MPNetConfig, MPNetModel

    folder = Path(root) / "ratescore"
    ner = folder / "RaTE-NER-Deberta"
    ner.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    spm = SentencePieceUnigramTokenizer()
    spm.train_from_iterator(CORPUS, vocab_size=300, special_tokens=specials, unk_token="[UNK]")
    spm.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                            special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    spm.save(str(ner / "tokenizer.json"))
    (ner / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DebertaV2Tokenizer", "model_max_length": 512, "pad_token": "[PAD]", "cls_token": "[CLS]",
        "sep_token": "[SEP]", "unk_token": "[UNK]", "mask_token": "[MASK]", "do_lower_case": False}))
    labels = ["O"] + [f"{p}-{t}" for t in RATE_TYPES for p in ("B", "I")]
    torch.manual_seed(seed)
    config = DebertaV2Config(vocab_size=spm.get_vocab_size(), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=2 * hidden, max_position_embeddings=512, pad_token_id=0, initializer_range=0.5,
                             num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    DebertaV2ForTokenClassification(config).save_pretrained(ner, safe_serialization=True)

    emb = folder / "BioLORD-2023-C"
    emb.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True, unk_token="[UNK]", sep_token="</s>", cls_token="<s>", pad_token="<pad>",
                                mask_token="<mask>")
    wp.train_from_iterator(CORPUS, vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "[UNK]", "<mask>"], min_frequency=1)
    wp.post_processor = TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                           special_tokens=[("<s>", 0), ("</s>", 2)])
    wp.save(str(emb / "tokenizer.json"))
    wp.save_model(str(emb))
    (emb / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "MPNetTokenizer", "model_max_length": 512, "do_lower_case": True, "bos_token": "<s>",
        "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>", "unk_token": "[UNK]", "pad_token": "<pad>",
        "mask_token": "<mask>"}))
    vocab = (emb / "vocab.txt").read_text().splitlines()
    MPNetModel(MPNetConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=2 * hidden, pad_token_id=1, initializer_range=0.2)).save_pretrained(emb, safe_serialization=True)
    _pin(root, "ratescore")
    return Path(root)
