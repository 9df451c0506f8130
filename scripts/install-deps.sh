#!/usr/bin/env bash
# Installs the Debian 12 packages sage needs to build and test. This list is
# the one place where dependencies are named. Idempotent: installs only what is
# missing, runs apt-get update at most once, works as root or through sudo.
set -euo pipefail

PACKAGES=(
  build-essential   # g++ 12, make
  cmake             # build system (>= 3.25)
  ninja-build       # fast builds
  ccache            # cached rebuilds
  pkg-config
  libgtest-dev      # GoogleTest (tests)
  libgmock-dev
  libbenchmark-dev  # Google Benchmark (bench/)
  libfmt-dev        # formatting
  libspdlog-dev     # logging
  libgrpc++-dev            # control plane (gRPC)
  libprotobuf-dev          # control-plane messages
  protobuf-compiler        # protoc
  protobuf-compiler-grpc   # grpc_cpp_plugin
  libsqlite3-dev           # the head's job records
  libssl-dev               # SHA-256 of uploaded programs; TLS on the data plane
  libcli11-dev             # the `sage` command line
  nlohmann-json3-dev       # JSON output and state files
  libcpp-httplib-dev       # the head's dashboard (/metrics, /api/v1)
  libhnswlib-dev           # sage::rag: HNSW vector index (header-only)
  iproute2                 # `ip netns` for the two-host cluster test
  clang                    # the head's locking contract: ctest cluster.thread_safety
  slurmctld slurmd slurm-client munge  # the Slurm test: a real two-node Slurm on this machine
  systemd python3-yaml     # deploy/ checked offline: systemd-analyze verify, the manifests parsed
  libcurl4-openssl-dev     # sage::rag: OpenAI-compatible HTTP clients (libcurl multi)
  prometheus               # promtool: the dashboard test checks /metrics with it
  chromium                 # headless browser: the dashboard page's tests
  pybind11-dev python3-dev python3-pytest  # the Python API (import sage) and its tests
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: need root to install: ${missing[*]}; run as root or install sudo" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
