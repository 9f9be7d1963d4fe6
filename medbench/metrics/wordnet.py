"""WordNet 3.0 for nltk, offline.

nltk's METEOR (the `medim-paper` protocol) needs `nltk.corpus.wordnet`, which nltk normally fetches
with `nltk.download` -- impossible here. Debian ships the same WordNet 3.0 database
(`wordnet-base`: data.*, index.*, *.exc; `wordnet-sense-index`: index.sense). nltk wants those
files copied into ``nltk_data/corpora/wordnet/`` plus a ``lexnames`` file (the 45 lexicographer
file names, documented in lexnames(5WN)), which we write ourselves::

    from medbench.metrics.wordnet import ensure_wordnet
    wn = ensure_wordnet()          # nltk's WordNetCorpusReader, ready to use
    wn.synsets("effusion")

Order: nltk's own WordNet if it already loads; else the folder built once under
``$MEDBENCH_HOME/nltk_data`` (default ``~/.cache/medbench/nltk_data``) from /usr/share/wordnet;
else a RuntimeError that says what to install.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from medbench.home import medbench_home

DEBIAN_WORDNET = Path("/usr/share/wordnet")
INSTALL_HINT = "apt-get install wordnet-base wordnet-sense-index"

# (file number, lexicographer file name, syntactic category: 1 noun, 2 verb, 3 adjective, 4 adverb)
LEXNAMES: tuple[tuple[int, str, int], ...] = (
    (0, "adj.all", 3), (1, "adj.pert", 3), (2, "adv.all", 4), (3, "noun.Tops", 1),
    (4, "noun.act", 1), (5, "noun.animal", 1), (6, "noun.artifact", 1), (7, "noun.attribute", 1),
    (8, "noun.body", 1), (9, "noun.cognition", 1), (10, "noun.communication", 1), (11, "noun.event", 1),
    (12, "noun.feeling", 1), (13, "noun.food", 1), (14, "noun.group", 1), (15, "noun.location", 1),
    (16, "noun.motive", 1), (17, "noun.object", 1), (18, "noun.person", 1), (19, "noun.phenomenon", 1),
    (20, "noun.plant", 1), (21, "noun.possession", 1), (22, "noun.process", 1), (23, "noun.quantity", 1),
    (24, "noun.relation", 1), (25, "noun.shape", 1), (26, "noun.state", 1), (27, "noun.substance", 1),
    (28, "noun.time", 1), (29, "verb.body", 2), (30, "verb.change", 2), (31, "verb.cognition", 2),
    (32, "verb.communication", 2), (33, "verb.competition", 2), (34, "verb.consumption", 2),
    (35, "verb.contact", 2), (36, "verb.creation", 2), (37, "verb.emotion", 2), (38, "verb.motion", 2),
    (39, "verb.perception", 2), (40, "verb.possession", 2), (41, "verb.social", 2), (42, "verb.stative", 2),
    (43, "verb.weather", 2), (44, "adj.ppl", 3),
)
POS_NAMES = ("noun", "verb", "adj", "adv")
REQUIRED = [f"{kind}.{pos}" for kind in ("data", "index") for pos in POS_NAMES] + [f"{pos}.exc" for pos in POS_NAMES]




def lexnames_text() -> str:
    """The ``lexnames`` file as WordNet's dict/ folder has it: number, name, category, tab-separated."""
    return "".join(f"{num:02d}\t{name}\t{cat}\n" for num, name, cat in LEXNAMES)


def build_wordnet_dir(source: Path = DEBIAN_WORDNET, nltk_data: Path | None = None) -> Path:
    """Copy Debian's WordNet files into ``<nltk_data>/corpora/wordnet`` (once) and write lexnames.

    Returns the nltk_data folder. Raises RuntimeError naming the missing files and the install command.
    """
    nltk_data = nltk_data or medbench_home() / "nltk_data"
    target = nltk_data / "corpora" / "wordnet"
    missing = [name for name in REQUIRED if not (source / name).is_file()]
    if missing:
        raise RuntimeError(
            f"WordNet 3.0 is needed by nltk METEOR (protocol 'medim-paper') but {source} lacks "
            f"{', '.join(missing)}. Install it with `{INSTALL_HINT}`, or place nltk's 'wordnet' corpus "
            f"under an nltk_data/corpora/ folder on nltk.data.path.")
    if (target / "lexnames").is_file() and all((target / n).is_file() for n in REQUIRED):
        return nltk_data
    tmp = target.with_name("wordnet.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = REQUIRED + (["index.sense"] if (source / "index.sense").is_file() else [])
    for name in names:
        shutil.copyfile(source / name, tmp / name)
    (tmp / "lexnames").write_text(lexnames_text())
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # appears complete or not at all
    return nltk_data


def ensure_wordnet():
    """Return a working ``nltk.corpus.wordnet``, building the offline copy if nltk has none."""
    import nltk
    from nltk.corpus import wordnet

    try:
        wordnet.ensure_loaded()
        return wordnet
    except LookupError:
        pass
    nltk_data = build_wordnet_dir()
    if str(nltk_data) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_data))
    try:
        wordnet.ensure_loaded()
    except LookupError as err:
        raise RuntimeError(f"nltk could not load WordNet from {nltk_data}/corpora/wordnet: {err}") from err
    return wordnet
