#!/usr/bin/env bash
# Puts the headers of the llama.cpp release that node-llama-cpp's prebuilt binaries were built from into
# DEST/include and DEST/ggml/include (peer.c must compile against exactly that release's structs).
# Usage: headers.sh NODE_LLAMA_CPP_DIR DEST. LLAMA_CPP_DIR=/path/to/a/checkout of that release overrides the lookup.
set -euo pipefail
package=$1
dest=$2
mkdir -p "$dest"
if [ -n "${LLAMA_CPP_DIR:-}" ]; then
  cp -r "$LLAMA_CPP_DIR/include" "$dest/include"
  mkdir -p "$dest/ggml" && cp -r "$LLAMA_CPP_DIR/ggml/include" "$dest/ggml/include"
  exit 0
fi
# node-llama-cpp ships its llama.cpp release as a git bundle (for offline builds from source).
bundle=$(find "$package/llama" -maxdepth 2 -name '*.bundle' 2>/dev/null | head -1)
if [ -n "$bundle" ]; then
  rm -rf "$dest" && git clone --quiet --no-checkout "$bundle" "$dest"
  ref=$(git -C "$dest" for-each-ref --format='%(refname)' | head -1)
  git -C "$dest" checkout --quiet "${ref:-HEAD}" -- include ggml/include
  exit 0
fi
for dir in "$package/llama/llama.cpp" "$package/llama/localBuilds/llama.cpp"; do
  if [ -f "$dir/include/llama.h" ]; then
    cp -r "$dir/include" "$dest/include"
    mkdir -p "$dest/ggml" && cp -r "$dir/ggml/include" "$dest/ggml/include"
    exit 0
  fi
done
echo "headers.sh: no llama.cpp sources in $package; set LLAMA_CPP_DIR to a checkout of the release in $package/llama/binariesGithubRelease.json" >&2
exit 1
