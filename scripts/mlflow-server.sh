#!/usr/bin/env bash
# One MLflow tracking server for the jobs of a cluster run (README, "On a SLURM cluster").
#
#   scripts/mlflow-server.sh start    start it if not running, wait for /health, print its URL; idempotent
#   scripts/mlflow-server.sh stop     stop the server and its workers (its own process group)
#   scripts/mlflow-server.sh status   print the URL and exit 0 when it answers /health
#
# SQLite backend and proxied artifacts under $CNNREPRO_MLFLOW_DIR (default .cnnrepro/mlflow-server in the
# current directory): jobs need only HTTP to the server, never the database file. Listens on
# $CNNREPRO_MLFLOW_HOST:$CNNREPRO_MLFLOW_PORT (default 127.0.0.1:5000, loopback: a one-node cluster).
# For many nodes: CNNREPRO_MLFLOW_HOST=0.0.0.0 and a PostgreSQL backend (README).
# Then: export CNNREPRO_TRACKING_URI=$(scripts/mlflow-server.sh start)
set -euo pipefail

DIR=${CNNREPRO_MLFLOW_DIR:-.cnnrepro/mlflow-server}
HOST=${CNNREPRO_MLFLOW_HOST:-127.0.0.1}
PORT=${CNNREPRO_MLFLOW_PORT:-5000}
PIDFILE=$DIR/server.pid
# What clients use: a server bound to every interface is reached through this host's name, which the
# server must then accept as Host header (it allows only localhost and private IPs by default).
ALLOWED=()
if [[ $HOST == 0.0.0.0 ]]; then
    URL="http://$(hostname -f):$PORT"
    ALLOWED=(--allowed-hosts "$(hostname -f):$PORT,$(hostname -s):$PORT,localhost:*,127.0.0.1:*")
else
    URL="http://$HOST:$PORT"
fi

die() { echo "mlflow-server: $*" >&2; exit 1; }
healthy() { curl -fsS -m 2 "$URL/health" >/dev/null 2>&1; }
running() { [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
    command -v mlflow >/dev/null || die "mlflow not found: activate the project's environment (.venv)"
    if running && healthy; then echo "$URL"; return; fi
    running && die "pid $(cat "$PIDFILE") holds $PIDFILE but $URL does not answer; run '$0 stop' first"
    healthy && die "$URL already answers but was not started from $DIR; pick CNNREPRO_MLFLOW_PORT"
    mkdir -p "$DIR/artifacts"
    local dir
    dir=$(cd "$DIR" && pwd)
    # Its own session (setsid), so `stop` ends the server and its uvicorn workers as one group.
    # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no background job runner, which nothing here uses.
    # One worker: SQLite takes one writer at a time anyway.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid mlflow server \
        --backend-store-uri "sqlite:///$dir/mlflow.db" \
        --artifacts-destination "$dir/artifacts" \
        --host "$HOST" --port "$PORT" --workers 1 "${ALLOWED[@]}" \
        >"$dir/server.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 240); do
        if healthy; then echo "$URL"; return; fi
        running || die "the server exited; see $dir/server.log"
        sleep 0.5
    done
    die "no answer from $URL after 120 s; see $dir/server.log"
}

stop() {
    running || { rm -f "$PIDFILE"; return 0; }
    local pid
    pid=$(cat "$PIDFILE")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return 0; }
        sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) if healthy; then echo "$URL"; else die "no answer from $URL"; fi ;;
    *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
