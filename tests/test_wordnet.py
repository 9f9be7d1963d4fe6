"""Offline WordNet for nltk: built from Debian's wordnet-base files, checked against those files."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import nltk
import pytest
from nltk.corpus.reader.wordnet import WordNetCorpusReader
from nltk.translate.meteor_score import single_meteor_score

from medbench.metrics.wordnet import DEBIAN_WORDNET, LEXNAMES, build_wordnet_dir, lexnames_text

pytestmark = [pytest.mark.filterwarnings("ignore:The multilingual functions"), pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").is_file(),
                                reason="Debian wordnet-base not installed (apt-get install wordnet-base wordnet-sense-index)")]
POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """nltk's reader on a freshly built folder (nltk >= 3.9 reads only under nltk.data.path roots)."""
    nltk_data = build_wordnet_dir(nltk_data=tmp_path_factory.mktemp("nltk_data"))
    nltk.data.path.append(str(nltk_data))
    yield WordNetCorpusReader(str(nltk_data / "corpora" / "wordnet"), None)
    nltk.data.path.remove(str(nltk_data))


def data_line(pos: str, offset: int) -> str:
    """WordNet offsets are byte offsets into data.<pos>."""
    with open(DEBIAN_WORDNET / f"data.{pos}", "rb") as f:
        f.seek(offset)
        return f.readline().decode()


def test_lexnames_match_the_manual():
    if not MAN_PAGE.is_file():
        pytest.skip("lexnames(5WN) man page not installed")
    rows = re.findall(r"^(\d\d)\t(\S+)", gzip.open(MAN_PAGE, "rt").read(), flags=re.M)
    assert [(int(n), name) for n, name in rows] == [(n, name) for n, name, _ in LEXNAMES]


def test_lexnames_categories_agree_with_data_files():
    categories = {num: cat for num, _, cat in LEXNAMES}
    for pos, cat in POS_NUMBER.items():
        seen = set()
        with open(DEBIAN_WORDNET / f"data.{pos}") as f:
            for line in f:
                if not line.startswith("  "):  # the licence header lines start with two spaces
                    seen.add(int(line.split(" ", 2)[1]))
        assert seen and {categories[n] for n in seen} == {cat}, pos
    assert len(LEXNAMES) == 45 and lexnames_text().splitlines()[3] == "03\tnoun.Tops\t1"


def test_synsets_match_debian_index_and_data(reader):
    index = next(l for l in open(DEBIAN_WORDNET / "index.noun") if l.startswith("effusion "))
    offsets = [int(tok) for tok in index.split() if re.fullmatch(r"\d{8}", tok)]
    synsets = reader.synsets("effusion", pos="n")
    assert [s.offset() for s in synsets] == offsets
    for s in synsets:
        line = data_line("noun", s.offset())
        assert line.startswith(f"{s.offset():08d} ")
        assert s.lexname() == LEXNAMES[int(line.split()[1])][1]
        assert s.definition() in line.split("|", 1)[1]
    assert "gush" in reader.synset_from_pos_and_offset("n", offsets[0]).lemma_names()
    assert reader.get_version() == "3.0"


def test_sense_index_and_exceptions(reader):
    if (DEBIAN_WORDNET / "index.sense").is_file():
        assert reader.lemma_from_key("effusion%1:04:00::").synset().pos() == "n"
    assert reader.morphy("lungs", "n") == "lung"  # regular morphology
    assert reader.morphy("feet", "n") == "foot"   # noun.exc


def test_meteor_uses_synonyms(reader):
    """'ticker' is a WordNet synonym of 'heart' (nltk looks synonyms up after Porter stemming, which
    leaves both words unchanged): both words align in one chunk, so with P = R = 1,
    METEOR = 1 - gamma * (chunks / matches) ** beta under nltk's defaults."""
    assert "ticker" in {l.name() for s in reader.synsets("heart") for l in s.lemmas()}
    alpha, beta, gamma = 0.9, 3.0, 0.5
    score = single_meteor_score(["a", "ticker"], ["a", "heart"], wordnet=reader, alpha=alpha, beta=beta, gamma=gamma)
    assert score == pytest.approx(1.0 * (1 - gamma * (1 / 2) ** beta), abs=1e-12)
    assert single_meteor_score(["a", "ticker"], ["a", "lung"], wordnet=reader) < score


def test_missing_source_says_what_to_install(tmp_path):
    with pytest.raises(RuntimeError, match="apt-get install wordnet-base wordnet-sense-index"):
        build_wordnet_dir(source=tmp_path / "nowhere", nltk_data=tmp_path / "nltk_data")


def test_build_is_idempotent(tmp_path):
    first = build_wordnet_dir(nltk_data=tmp_path)
    stamp = (first / "corpora/wordnet/data.noun").stat().st_mtime_ns
    assert build_wordnet_dir(nltk_data=tmp_path) == first
    assert (first / "corpora/wordnet/data.noun").stat().st_mtime_ns == stamp
    assert (first / "corpora/wordnet/lexnames").read_text() == lexnames_text()
    assert (first / "corpora/wordnet/index.sense").is_file() == (DEBIAN_WORDNET / "index.sense").is_file()
    # ensure_wordnet() (nltk's global reader) is exercised by tests/test_text_medim.py, which loads it anyway
