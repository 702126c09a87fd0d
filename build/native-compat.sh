#!/usr/bin/env bash
# Makes the build's own copy of TorchSharp's native library load on Linux distributions whose libstdc++ predates
# GCC 13 (Debian 12, Ubuntu 22.04). libLibTorchSharp.so needs GLIBCXX_3.4.32 for one symbol only,
# std::ios_base_library_init(); we clear that symbol's version, mark the version requirement weak and add a tiny
# library that defines the symbol. Nothing outside NATIVE_DIR is touched (not the system, not the NuGet cache).
# Usage: native-compat.sh NATIVE_DIR WORK_DIR [always]
# "always" patches even on a current libstdc++ (for packages that must load elsewhere); the patched library loads on
# both, since the compat library only defines what an older libstdc++ lacks.
set -euo pipefail
native_dir=$1
work_dir=$2
mode=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
lib="$native_dir/libLibTorchSharp.so"
compat_name=libsharptune_stdcxx_compat.so
[ -f "$lib" ] || exit 0

system_libstdcxx=$( (/sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null) | awk '/libstdc\+\+\.so\.6 .*x86-64/ && !found {print $NF; found = 1}')
if [ "$mode" != always ] && { [ -z "$system_libstdcxx" ] || grep -qa 'GLIBCXX_3\.4\.32' "$system_libstdcxx"; }; then
  exit 0   # a current libstdc++: nothing to do
fi
if patchelf --print-needed "$lib" 2>/dev/null | grep -x "$compat_name" >/dev/null; then
  exit 0   # this copy is already patched
fi
for tool in patchelf g++; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: this system's libstdc++ ($system_libstdcxx) is older than TorchSharp needs (GLIBCXX_3.4.32)." >&2
    echo "error: the build fixes its own copy of libLibTorchSharp.so, which needs '$tool': sudo apt-get install -y patchelf g++" >&2
    exit 1
  fi
done

mkdir -p "$work_dir"
g++ -shared -fPIC -O2 -o "$native_dir/$compat_name" "$here/ios_base_library_init.cpp"
[ -x "$work_dir/elf_weak_version" ] || g++ -O2 -o "$work_dir/elf_weak_version" "$here/elf_weak_version.cpp"
tmp="$lib.sharptune-tmp"
cp "$lib" "$tmp"   # a fresh file: the original may be a hard link into the NuGet cache
patchelf --clear-symbol-version _ZSt21ios_base_library_initv "$tmp"
patchelf --add-needed "$compat_name" "$tmp"
"$work_dir/elf_weak_version" "$tmp" GLIBCXX_3.4.32
mv -f "$tmp" "$lib"
echo "native-compat: patched $lib for $system_libstdcxx"
