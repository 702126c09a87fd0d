#!/usr/bin/env bash
# Installs the few system tools SharpTune's build needs on this machine, and only where they are needed:
# patchelf and g++ on Linux distributions whose libstdc++ predates GCC 13 (see native-compat.sh); jemalloc where glibc
# predates 2.38 (below); with arguments, the tools some tests need: chromium (dashboard pages), postgresql (the shared
# job store), openmpi (distributed training), node (Node.js and npm: exported GGUF files run in llama.cpp's npm build).
# Everything else comes from NuGet during `dotnet build`. Safe to run repeatedly.
set -euo pipefail
[ "$(uname -s)" = Linux ] || exit 0
need=()
libstdcxx=$( (/sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null) | awk '/libstdc\+\+\.so\.6 .*x86-64/ && !found {print $NF; found = 1}')
if [ -n "$libstdcxx" ] && ! grep -qa 'GLIBCXX_3\.4\.32' "$libstdcxx"; then
  command -v patchelf >/dev/null || need+=(patchelf)
  command -v g++ >/dev/null || need+=(g++)
fi
# glibc before 2.38 cannot reuse freed memory for libtorch's aligned allocations (glibc bug 14581): training steps then
# hold 1.6-1.9x their tensors. `sharptune` restarts itself under jemalloc where libjemalloc.so.2 is installed
# (src/SharpTune/Runtime/NativeAllocator.cs).
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
if [ -n "$glibc" ] && [ "$(printf '%s\n2.38\n' "$glibc" | sort -V | head -1)" != 2.38 ]; then
  (/sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null) | grep -q 'libjemalloc\.so\.2' || need+=(libjemalloc2)
fi
for extra in "$@"; do
  case "$extra" in
    chromium) command -v chromium >/dev/null || need+=(chromium) ;;
    # The shared job store's tests start a real PostgreSQL server from the package's binaries.
    postgresql) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql) ;;
    # Data-parallel training (train --nproc, mpirun) runs over Open MPI's libmpi.
    openmpi) command -v mpirun >/dev/null && (/sbin/ldconfig -p 2>/dev/null || ldconfig -p) | grep 'libmpi\.so' >/dev/null || need+=(openmpi-bin libopenmpi-dev) ;;
    # The GGUF export tests run llama.cpp's prebuilt CPU library from npm through Node.js.
    node) command -v node >/dev/null || need+=(nodejs); command -v npm >/dev/null || need+=(npm) ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "SharpTune needs: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing ${need[*]} ..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
