# Cross-compiling the addon for Linux arm64 (aarch64) on an x86-64 machine, with Debian's
# g++-aarch64-linux-gnu: `npm run build:arm64` (scripts/build-arm64.mjs). The CPU backend
# only: CUDA for arm64 (Grace Hopper) needs an aarch64 CUDA toolkit.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
