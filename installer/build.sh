#!/usr/bin/env bash
# Build the one-folder desktop app and smoke-test it; prints build time and bundle size.
#   installer/build.sh [DISTPATH] [WORKPATH]     (defaults: dist build, both git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=${1:-dist}
WORK=${2:-build}
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --distpath "$DIST" --workpath "$WORK" installer/cxrlt.spec
end=$(date +%s)
echo "build time: $((end - start)) s"
echo "bundle size: $(du -sh "$DIST/cxrlt" | cut -f1) ($DIST/cxrlt)"
QT_QPA_PLATFORM=offscreen "$PY" installer/smoke_test.py "$DIST/cxrlt/cxrlt" ${SMOKE_ARGS:-}
