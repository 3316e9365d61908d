#!/usr/bin/env bash
# Benchmarks the gateway against the same handler under Bun.serve and workerd, and the
# socket API's INVOKE, on 127.0.0.1 only. One command, from anywhere:
#
#   benches/compare.sh                  # 2 rounds of 10 s per run, about 8 minutes
#   ROUNDS=1 RUN_SECONDS=5 benches/compare.sh
#
# It installs what it needs (wrk from the distribution's packages, Bun and workerd from
# npm), builds the release binary and the socket load generator, then runs, alternating
# within each round: Bun.serve direct, our HTTP gateway, our socket INVOKE and workerd,
# at 1 and at 50 connections, for a JSON hello-world (GET) and a 64 KiB binary echo
# (POST), all on benches/compare/handler.mjs. Then cold starts against bare Bun start-up
# and memory (benches/compare/startup.ts). Every server is warmed up first (3 s at 50
# connections, not measured). benches/compare/table.ts prints the table and writes it
# into docs/performance.md between its `compare` markers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-2}
RUN_SECONDS=${RUN_SECONDS:-10}

if ! command -v wrk >/dev/null; then
    echo "== installing wrk"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
echo "== npm ci (Bun, workerd) and cargo build --release"
npm ci --prefix bun --no-audit --no-fund >/dev/null
npm ci --prefix benches/compare --no-audit --no-fund >/dev/null
cargo build --release --quiet
LOAD=$(cargo bench --bench socket_load --no-run --message-format=json 2>/dev/null |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){try{const m=JSON.parse(l);if(m.executable&&m.target&&m.target.name==="socket_load")console.log(m.executable)}catch{}}})')
BUN=$ROOT/bun/node_modules/.bin/bun
WORKERD=$ROOT/benches/compare/node_modules/.bin/workerd
FUNCTIONS=$ROOT/target/release/functions

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
wait_for() {
    for _ in $(seq 100); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    exit 1
}

echo "== starting the servers"
BUN_PORT=$(free_port)
PORT=$BUN_PORT "$BUN" benches/compare/bun-serve.ts >"$WORK/bun.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/functions"
cp benches/compare/handler.mjs "$WORK/functions/hello.js"
GATEWAY_PORT=$(free_port)
"$FUNCTIONS" serve --functions-dir "$WORK/functions" --data-dir "$WORK/data" \
    --socket "$WORK/functions.sock" --http-port "$GATEWAY_PORT" --config /dev/null \
    >"$WORK/functions.log" 2>&1 &
SERVER_PID=$!
PIDS+=($SERVER_PID)
WORKERD_PORT=$(free_port)
"$WORKERD" serve benches/compare/workerd.capnp --socket-addr "http=127.0.0.1:$WORKERD_PORT" \
    >"$WORK/workerd.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$BUN_PORT/"
wait_for "http://127.0.0.1:$GATEWAY_PORT/functions/hello"
wait_for "http://127.0.0.1:$WORKERD_PORT/"

url() {
    case $1 in
        bun) echo "http://127.0.0.1:$BUN_PORT/" ;;
        gateway) echo "http://127.0.0.1:$GATEWAY_PORT/functions/hello" ;;
        workerd) echo "http://127.0.0.1:$WORKERD_PORT/" ;;
    esac
}

# One run: prints `target connections payload requests req/s p50_us p99_us errors`.
run() {
    local target=$1 conns=$2 payload=$3 bytes=0 threads=1 result
    [ "$payload" = echo64k ] && bytes=65536
    [ "$conns" -gt 1 ] && threads=2
    if [ "$target" = socket ]; then
        result=$("$LOAD" "$WORK/functions.sock" hello "$conns" "$RUN_SECONDS" "$bytes" | grep '^RESULT')
    else
        result=$(BODY_BYTES=$bytes wrk -t"$threads" -c"$conns" -d"${RUN_SECONDS}s" --latency \
            -s benches/compare/report.lua "$(url "$target")" | grep '^RESULT')
    fi
    echo "$target $conns $payload ${result#RESULT }"
}

# The control plane's peak VmRSS while the gateway runs at 50 connections.
peak_rss() {
    local peak=0 now
    while kill -0 "$SERVER_PID" 2>/dev/null && [ ! -e "$WORK/stop-sampling" ]; do
        now=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
        [ "$now" -gt "$peak" ] && peak=$now
        echo "$peak" >"$WORK/peak-rss"
        sleep 0.5
    done
}

# Warm-up, not measured: every server gets its 50 connections, threads and JIT before
# the rounds (our pool starts its workers, the gateway grows its threads).
echo "== warm-up"
for target in bun gateway workerd; do
    wrk -t2 -c50 -d3s "$(url "$target")" >/dev/null
done
"$LOAD" "$WORK/functions.sock" hello 50 3 >/dev/null

RESULTS=$WORK/results.txt
: >"$RESULTS"
echo "server_idle_before_load_kib $(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")" >"$WORK/memory.txt"
for round in $(seq "$ROUNDS"); do
    for conns in 1 50; do
        for payload in hello echo64k; do
            for target in bun gateway socket workerd; do
                if [ "$target" = gateway ] && [ "$conns" = 50 ]; then
                    rm -f "$WORK/stop-sampling"
                    peak_rss &
                    SAMPLER=$!
                fi
                line=$(run "$target" "$conns" "$payload")
                echo "round $round: $line"
                echo "$line" >>"$RESULTS"
                if [ "$target" = gateway ] && [ "$conns" = 50 ]; then
                    touch "$WORK/stop-sampling"
                    wait "$SAMPLER" || true
                    echo "server_load_kib $(cat "$WORK/peak-rss")" >>"$WORK/memory.txt"
                fi
            done
        done
    done
done

echo "== cold starts and memory"
"$BUN" benches/compare/startup.ts "$FUNCTIONS" "$BUN" 20 | tee -a "$WORK/memory.txt"

"$BUN" benches/compare/table.ts "$RESULTS" "$WORK/memory.txt" "$RUN_SECONDS" "$ROUNDS"
