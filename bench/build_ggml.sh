#!/usr/bin/env bash
# Build ggml's base library (libggml-base: ggml_quantize_chunk, the type traits and their
# to_float dequantizers) from the llama.cpp copy vendored in the llama-cpp-python source
# distribution, CPU only, into build/ggml/. Used by bench/llamacpp_peer.py for the
# llama.cpp K-/IQ-quant rows of bench/quality.py. Optional: if this fails those rows
# read "not run: <reason>".
#
#   bash bench/build_ggml.sh            # idempotent; rebuilds only when the library is missing
#
# Needs: pip (the project's venv), cmake >= 3.14, a C/C++ compiler (gcc/g++), make or ninja.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
SRC="$ROOT/build/llamacpp-src"
OUT="$ROOT/build/ggml"
JOBS="${JOBS:-2}"

lib() { find "$OUT/build" -name 'libggml-base.so*' -type f 2>/dev/null | head -n1; }

if [ -n "$(lib)" ] && [ -f "$OUT/SOURCE" ]; then
    echo "ggml-base already built: $(lib) ($(cat "$OUT/SOURCE"))"
    exit 0
fi
rm -f "$OUT/FAILED"
mkdir -p "$OUT"
fail() { echo "build_ggml: $1" >&2; echo "$1" >"$OUT/FAILED"; exit 1; }
for tool in cmake cc c++; do
    command -v "$tool" >/dev/null || fail "$tool not found"
done

mkdir -p "$SRC"
TARBALL="$SRC/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$TARBALL" ]; then
    "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$SRC" \
        || fail "pip download of the llama-cpp-python $VERSION sdist failed"
fi
if [ ! -d "$SRC/llama_cpp_python-$VERSION" ]; then
    tar -xzf "$TARBALL" -C "$SRC" || fail "cannot unpack $TARBALL"
fi
GGML="$SRC/llama_cpp_python-$VERSION/vendor/llama.cpp/ggml"
[ -f "$GGML/CMakeLists.txt" ] || fail "no vendor/llama.cpp/ggml in the sdist"

# Configure through llama.cpp's top-level project (the sdist lacks ggml.pc.in, which a standalone
# ggml configure needs), with every llama.cpp target switched off; then build only ggml-base:
# no CPU backend, no accelerators, no BLAS, no OpenMP, portable (non-native) flags.
cmake -S "$GGML/.." -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF \
    -DGGML_CPU=OFF -DGGML_BLAS=OFF -DGGML_METAL=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF \
    -DGGML_OPENMP=OFF -DGGML_NATIVE=OFF -DGGML_CCACHE=OFF >"$OUT/cmake.log" 2>&1 || { tail -n 20 "$OUT/cmake.log" >&2; fail "cmake configure failed (build/ggml/cmake.log)"; }
cmake --build "$OUT/build" --target ggml-base -j "$JOBS" >"$OUT/build.log" 2>&1 || { tail -n 20 "$OUT/build.log" >&2; fail "compiling ggml-base failed (build/ggml/build.log)"; }

[ -n "$(lib)" ] || fail "libggml-base.so not produced"
echo "llama-cpp-python $VERSION sdist, vendor/llama.cpp/ggml, target ggml-base" >"$OUT/SOURCE"
echo "built $(lib)"
