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
.venv/bin/python -c "import medbench, torch, torchvision, torch_fidelity, transformers, pycocoevalcap, nltk" \
  || { echo "medbench setup: the Python environment is incomplete" >&2; exit 1; }
echo "medbench setup: done (.venv)"
