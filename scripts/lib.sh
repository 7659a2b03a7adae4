# Shared by scripts/quickstart and scripts/test: one target directory and one
# download cache outside the repository, so a second run is fast.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SLUICE_CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}"
mkdir -p "$SLUICE_CACHE"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required ($2)" >&2; exit 1; }
}

check_tools() {
  need cargo "install Rust from rustup"
  need java "Kafka and Cassandra run on Java 17"
  need mvn "Kafka and Cassandra jars come from Maven Central"
  need cmake "librdkafka is built from source"
  need cc "librdkafka is built from source"
  need go "MinIO, the S3-compatible server of the local stack, is built with go install"
}

# Starts `devstack up ARGS...` in the background, waits for READY and exports
# the NAME=VALUE lines it printed. Stops it when this shell exits.
start_devstack() {
  local bin="$1"; shift
  local out; out="$(mktemp)"
  "$bin/devstack" up "$@" >"$out" &
  DEVSTACK_PID=$!
  trap 'kill -TERM "$DEVSTACK_PID" 2>/dev/null; wait "$DEVSTACK_PID" 2>/dev/null || true' EXIT
  local waited=0
  until grep -q '^READY$' "$out"; do
    if ! kill -0 "$DEVSTACK_PID" 2>/dev/null; then
      echo "error: devstack exited before it was ready" >&2; exit 1
    fi
    # The first run downloads Kafka and Cassandra from Maven Central and
    # builds MinIO from the Go module proxy.
    if [ "$waited" -ge 2400 ]; then echo "error: devstack not ready after 20 minutes" >&2; exit 1; fi
    sleep 0.5; waited=$((waited + 1))
  done
  while IFS='=' read -r name value; do
    [ -n "$value" ] && export "$name=$value"
  done < <(grep '=' "$out")
}
