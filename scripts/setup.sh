#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for medbench: system packages, a venv in .venv, the package.
#   bash scripts/setup.sh
# System packages: a Java runtime (pycocoevalcap's METEOR 1.5 and PTB tokenizer), WordNet 3.0
# (nltk METEOR of the medim-paper protocol), Chromium (the HTML report browser test).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
for pkg in wordnet-base wordnet-sense-index chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "medbench setup: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# torch and torchvision are pinned as a pair that imports together (torch-fidelity needs torchvision).
.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" -e ".[test,field]" 2>&1 | grep -v "^WARNING: Location" || true
# RaTEScore (radeval -> medspacy 1.3.1 -> spaCy): on Python < 3.12 medspacy and pyrush pin spacy<3.8, whose
# wheels (spacy 3.7.5, thinc 8.2.x) are built for numpy 1 and fail against numpy 2 at import. spaCy 3.8 /
# thinc 8.3 are numpy 2 builds, and medspacy's own metadata takes them on Python >= 3.12; installed here
# over that pin (pip check names exactly medspacy and pyrush; docs/decisions.md, issue 15).
.venv/bin/pip install -q "spacy==3.8.18" "thinc==8.3.14" 2>&1 | grep -v -e "^WARNING: Location" \
  -e "^ERROR: pip's dependency resolver does not currently take into account" \
  -e '^\(medspacy 1\.3\.1\|pyrush 1\.0\.13\) requires spacy<3\.8; python_version < "3\.12", but you have spacy 3\.8\.18' || true
.venv/bin/python -c "import medbench, torch, torchvision, torch_fidelity, transformers, pycocoevalcap, nltk, spacy" \
  || { echo "medbench setup: the Python environment is incomplete" >&2; exit 1; }
echo "medbench setup: done (.venv)"
