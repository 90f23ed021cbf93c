#!/usr/bin/env bash
# Regenerate constraints.txt, the lock `make` installs from: a fresh venv gets torch (the CPU
# build on disk) and the newest release of everything `.[test]` asks for, then its exact set of
# versions is frozen. Run the suite on the result before committing it (`make clean test`).
#
# Why a freeze and not pip-compile: pip-compile resolves torch from PyPI's metadata, which adds
# the CUDA wheels (nvidia-*, triton) the CPU build never installs; freezing what a fresh venv
# actually holds pins exactly what CI installs, and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
TORCH=${TORCH:-torch==2.13.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q "$TORCH"
"$tmp/venv/bin/pip" install -q -e '.[test]'
pip_now=$("$tmp/venv/bin/pip" --version | cut -d' ' -f2)
{
  echo "# The lock: every package \`make demo\` and \`make test\` install, at the versions the suite"
  echo "# passed with. Regenerate on purpose with \`make lock\` (tools/lock.sh), then \`make clean test\`."
  echo "# torch 2.13.0 is the CPU build this machine carries on disk; any other release pulls a"
  echo "# multi-GB CUDA build. The pip that installs it (Makefile reads this line):"
  echo "# pip==$pip_now"
  "$tmp/venv/bin/pip" freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/' | LC_ALL=C sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -c '^[^#].*==' constraints.txt) pins, pip $pip_now"
