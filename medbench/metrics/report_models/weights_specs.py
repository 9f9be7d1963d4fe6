"""What each report-metric family needs on the user's disk (see `medbench weights list`).

Layout: ``<weights root>/<spec.name>/<file>``. The files are the published ones, renamed only
where noted; the Hugging Face model folders are the repositories' own files, downloaded by the
user (e.g. ``huggingface-cli download distilbert/distilbert-base-uncased --local-dir DIR``).
medbench does not know the published sha256 of these files (the packages carry no hashes), so
they are ``None``: the hash found is recorded in run.json, and ``medbench weights pin NAME``
accepts locally built files (the tests' tiny models) as unverified.
"""
from __future__ import annotations

from medbench.weights import WeightFile, WeightsSpec

HF_BERT_TOKENIZER = ("config.json", "vocab.txt", "tokenizer_config.json")
HF_MODEL = ("config.json", "model.safetensors")


def _files(prefix: str, names: tuple[str, ...]) -> tuple[WeightFile, ...]:
    return tuple(WeightFile(f"{prefix}/{n}" if prefix else n) for n in names)


CHEXBERT = WeightsSpec(
    name="chexbert",
    files=(WeightFile("chexbert.pth"),) + _files("bert-base-uncased", HF_BERT_TOKENIZER),
    licence="chexbert.pth: MIT (StanfordAIMI/RRG_scorers card); bert-base-uncased: Apache-2.0",
    source="https://huggingface.co/StanfordAIMI/RRG_scorers (chexbert.pth) and "
           "https://huggingface.co/google-bert/bert-base-uncased (config.json, vocab.txt, tokenizer_config.json)",
    description="CheXbert labeler (Smit et al. 2020) as radeval/f1chexbert build it: BERT-base + 13 four-way heads "
                "+ a No Finding head; chexbert.pth read with torch.load(weights_only=True), strict keys",
    used_by=("clinical.chexbert", "nlg.radcliq_v1"))

BERTSCORE_DISTILBERT = WeightsSpec(
    name="bertscore-distilbert-base-uncased",
    files=_files("", HF_MODEL + ("tokenizer.json", "tokenizer_config.json", "vocab.txt")),
    licence="Apache-2.0",
    source="https://huggingface.co/distilbert/distilbert-base-uncased",
    description="distilbert-base-uncased for BERTScore layer 5 (RadEval's 'bertscore'); rescale baseline from "
                "radeval's vendored bert-score",
    used_by=("nlg.bertscore",))

BERTSCORE_DISTILROBERTA = WeightsSpec(
    name="bertscore-distilroberta-base",
    files=_files("", HF_MODEL + ("tokenizer.json", "vocab.json", "merges.txt")),
    licence="Apache-2.0",
    source="https://huggingface.co/distilbert/distilroberta-base",
    description="distilroberta-base for BERTScore layer 5, rescaled, IDF from the references (the RadCliQ-v1 component)",
    used_by=("nlg.radcliq_v1",))

EMBEDDER = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")


def _radgraph(model_type: str, used_by: tuple[str, ...], what: str) -> WeightsSpec:
    return WeightsSpec(
        name=model_type,
        files=(WeightFile(f"{model_type}.tar.gz"),) + _files("embedder", EMBEDDER),
        licence="MIT (StanfordAIMI/RRG_scorers card); the embedder's own licence (see its model card)",
        source=f"https://huggingface.co/StanfordAIMI/RRG_scorers ({model_type}.tar.gz, as published); embedder/ = "
               "the Hugging Face model the archive's config.json names (model.embedder.token_embedders.bert.model_name)",
        description=f"{what}: DyGIE++ archive read by radeval's vendored radgraph 0.1.18 (weights.th, "
                    "weights_only=True, strict keys), extracted into medbench's cache with the embedder pointed at embedder/",
        used_by=used_by)


RADGRAPH_XL = _radgraph("radgraph-xl", ("nlg.radgraph",), "RadGraph-XL (Delbrouck et al. 2024), the F1-RadGraph model")
RADGRAPH = _radgraph("radgraph", ("nlg.radcliq_v1",), "RadGraph (Jain et al. 2021), the model RadCliQ-v1 was fit with")

RATESCORE = WeightsSpec(
    name="ratescore",
    files=_files("RaTE-NER-Deberta", HF_MODEL + ("tokenizer.json", "tokenizer_config.json"))
    + _files("BioLORD-2023-C", HF_MODEL + ("tokenizer.json", "tokenizer_config.json")),
    licence="RaTE-NER-Deberta: MIT (model card, not verified); BioLORD-2023-C: see its model card",
    source="https://huggingface.co/Angelakeke/RaTE-NER-Deberta and https://huggingface.co/FremyCompany/BioLORD-2023-C "
           "(weights as model.safetensors)",
    description="RaTEScore (Zhao et al. 2024): medical NER (DeBERTa-v3 token classifier) + BioLORD entity embeddings",
    used_by=("nlg.ratescore",))

GREEN = WeightsSpec(
    name="green",
    files=_files("GREEN-radllama2-7b", ("config.json", "model.safetensors.index.json", "tokenizer_config.json")),
    licence="Llama 2 Community License (GREEN-RadLlama2-7b model card)",
    source="https://huggingface.co/StanfordAIMI/GREEN-radllama2-7b (all files; the shards named by "
           "model.safetensors.index.json are checked when loaded)",
    description="GREEN (Ostmeier et al. 2024) judge LLM, 7B, fp16 on one CUDA GPU (~14 GB)",
    used_by=("nlg.green",))

ALL = (CHEXBERT, BERTSCORE_DISTILBERT, BERTSCORE_DISTILROBERTA, RADGRAPH_XL, RADGRAPH, RATESCORE, GREEN)
