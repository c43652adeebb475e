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
# For many nodes: CNNREPRO_MLFLOW_HOST=0.0.0.0 and a database server, CNNREPRO_MLFLOW_BACKEND_URI (e.g.
# postgresql://mlflow@db-host:5432/mlflow, its password in ~/.pgpass: a URI with a password is refused, as
# it would be on the server's command line), and CNNREPRO_MLFLOW_ARTIFACTS where artifacts go (README).
# Then: export CNNREPRO_TRACKING_URI=$(scripts/mlflow-server.sh start)
#
# Authentication (CNNREPRO_MLFLOW_AUTH): `basic` runs MLflow's basic-auth app, whose admin user is the one
# MLflow's client logs in as: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD from the environment,
# else ~/.mlflow/credentials (MLflow's own file, which must be mode 600), so every job that sees the same
# environment or home directory authenticates with no further setting. The password goes to the server in
# its environment, never on a command line (which `ps` shows to every user). Anonymous requests get 401.
# `none` serves anyone who can connect: allowed on loopback only (the default there); any other address
# defaults to `basic`, and `none` is refused.
set -euo pipefail

DIR=${CNNREPRO_MLFLOW_DIR:-.cnnrepro/mlflow-server}
HOST=${CNNREPRO_MLFLOW_HOST:-127.0.0.1}
PORT=${CNNREPRO_MLFLOW_PORT:-5000}
BACKEND=${CNNREPRO_MLFLOW_BACKEND_URI:-}
ARTIFACTS=${CNNREPRO_MLFLOW_ARTIFACTS:-}
PIDFILE=$DIR/server.pid
CREDENTIALS=$HOME/.mlflow/credentials # where MLflow's client looks (mlflow.utils.credentials)

die() { echo "mlflow-server: $*" >&2; exit 1; }

loopback() { [[ $HOST == 127.* || $HOST == localhost || $HOST == ::1 ]]; }
if loopback; then AUTH=${CNNREPRO_MLFLOW_AUTH:-none}; else AUTH=${CNNREPRO_MLFLOW_AUTH:-basic}; fi
[[ $AUTH == basic || $AUTH == none ]] || die "CNNREPRO_MLFLOW_AUTH=$AUTH: expected basic or none"
[[ ! $BACKEND =~ ://[^/@]*:[^/@]*@ ]] || die "CNNREPRO_MLFLOW_BACKEND_URI holds a password, which would be on" \
    "the server's command line; put it in ~/.pgpass (PostgreSQL) or the driver's option file instead"

# What clients use: a server bound to every interface is reached through this host's name, which the
# server must then accept as Host header (it allows only localhost and private IPs by default).
ALLOWED=()
if [[ $HOST == 0.0.0.0 ]]; then
    URL="http://$(hostname -f):$PORT"
    ALLOWED=(--allowed-hosts "$(hostname -f):$PORT,$(hostname -s):$PORT,localhost:*,127.0.0.1:*")
else
    URL="http://$HOST:$PORT"
fi

healthy() { curl -fsS -m 2 "$URL/health" >/dev/null 2>&1; }
running() { [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

LOGIN=
SECRET=
# The credentials MLflow's client would send, into LOGIN and SECRET; fails in one line when there are none.
load_credentials() {
    if [[ -n ${MLFLOW_TRACKING_USERNAME:-}${MLFLOW_TRACKING_PASSWORD:-} ]]; then
        [[ -n ${MLFLOW_TRACKING_USERNAME:-} && -n ${MLFLOW_TRACKING_PASSWORD:-} ]] ||
            die "set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or neither"
        LOGIN=$MLFLOW_TRACKING_USERNAME
        SECRET=$MLFLOW_TRACKING_PASSWORD
        return
    fi
    [[ -e $CREDENTIALS ]] || die "refusing to listen on $HOST:$PORT without authentication: no credentials" \
        "(set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or write $CREDENTIALS with mode 600; README)"
    [[ -f $CREDENTIALS && -O $CREDENTIALS ]] || die "$CREDENTIALS: not a regular file owned by $(id -un)"
    local mode
    mode=$(stat -c %a "$CREDENTIALS")
    (((8#$mode & 8#077) == 0)) || die "$CREDENTIALS: mode $mode lets other users read the password; chmod 600 it"
    # Parsed as MLflow's client parses it (configparser, section [mlflow]), so both read the same password.
    local parsed
    parsed=$("$PYTHON" -c '
import configparser, sys
c = configparser.ConfigParser()
c.read(sys.argv[1])
s = c["mlflow"] if c.has_section("mlflow") else {}
print(s.get("mlflow_tracking_username", ""))
print(s.get("mlflow_tracking_password", ""))' "$CREDENTIALS") || die "$CREDENTIALS: not readable as MLflow's credentials file"
    LOGIN=${parsed%%$'\n'*}
    SECRET=${parsed#*$'\n'}
    [[ -n $LOGIN && -n $SECRET ]] ||
        die "$CREDENTIALS: needs mlflow_tracking_username and mlflow_tracking_password under [mlflow]"
}

check_login() {
    [[ $LOGIN =~ ^[A-Za-z0-9._@+-]+$ ]] || die "user name ${LOGIN@Q}: use letters, digits and ._@+- only"
    ((${#SECRET} >= 12)) || die "the password for $LOGIN is shorter than the 12 characters MLflow's auth app needs"
}

# An authenticated request, its HTTP status; the login goes to curl on stdin, not on its command line.
authenticated_status() {
    local user=${LOGIN//\\/\\\\} pass=${SECRET//\\/\\\\}
    printf 'user = "%s:%s"\n' "${user//\"/\\\"}" "${pass//\"/\\\"}" |
        curl -sS -m 5 -o /dev/null -w '%{http_code}' -K - "$URL/api/2.0/mlflow/experiments/search?max_results=1"
}

# With basic auth, the server must accept the login the jobs will use (the auth app keeps the password it
# was first started with).
check_accepted() {
    [[ $AUTH == basic ]] || return 0
    local code
    code=$(authenticated_status) || true
    [[ $code == 200 ]] || die "$URL refused $LOGIN (HTTP $code): its users ($DIR/basic_auth.db) were created" \
        "with another password; change it through MLflow, or stop the server and remove that file"
}

start() {
    command -v mlflow >/dev/null || die "mlflow not found: activate the project's environment (.venv)"
    PYTHON=$(dirname "$(command -v mlflow)")/python
    [[ -x $PYTHON ]] || PYTHON=python3
    local app=()
    if [[ $AUTH == none ]]; then
        loopback || die "refusing to listen on $HOST:$PORT without authentication (CNNREPRO_MLFLOW_AUTH=none):" \
            "anyone who reaches it could delete experiments and write artifacts; use CNNREPRO_MLFLOW_AUTH=basic"
    else
        load_credentials
        check_login
        "$PYTHON" -c 'import flask_wtf' 2>/dev/null ||
            die "MLflow's basic-auth app needs Flask-WTF, missing from this environment (pip install 'mlflow[auth]')"
        app=(--app-name basic-auth)
    fi
    if running && healthy; then check_accepted; echo "$URL"; return; fi
    running && die "pid $(cat "$PIDFILE") holds $PIDFILE but $URL does not answer; run '$0 stop' first"
    healthy && die "$URL already answers but was not started from $DIR; pick CNNREPRO_MLFLOW_PORT"
    mkdir -p "$DIR/artifacts"
    local dir
    dir=$(cd "$DIR" && pwd)
    local backend=${BACKEND:-sqlite:///$dir/mlflow.db} artifacts=${ARTIFACTS:-$dir/artifacts}
    if [[ $AUTH == basic ]]; then
        # Behind a login, the store is the server's alone: what it writes (runs, artifacts, the auth app's
        # users and password hashes) is mode 600 in a directory of mode 700. The session key signs the
        # auth app's CSRF tokens (kept, so a restart does not log browsers out).
        chmod 700 "$dir"
        (
            umask 077
            [[ -s $dir/flask-secret-key ]] || "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' >"$dir/flask-secret-key"
            printf '[mlflow]\ndefault_permission = NO_PERMISSIONS\ndatabase_uri = sqlite:///%s\nadmin_username = %s\n' \
                "$dir/basic_auth.db" "$LOGIN" >"$dir/basic_auth.ini"
        )
    fi
    # Its own session (setsid), so `stop` ends the server and its uvicorn workers as one group.
    # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no background job runner, which nothing here uses.
    # One worker: SQLite takes one writer at a time anyway.
    (
        export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
        if [[ $AUTH == basic ]]; then
            umask 077
            export MLFLOW_AUTH_CONFIG_PATH=$dir/basic_auth.ini MLFLOW_AUTH_ADMIN_USERNAME=$LOGIN
            export MLFLOW_AUTH_ADMIN_PASSWORD=$SECRET
            MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$dir/flask-secret-key")
            export MLFLOW_FLASK_SERVER_SECRET_KEY
        fi
        exec setsid mlflow server \
            --backend-store-uri "$backend" \
            --artifacts-destination "$artifacts" \
            --host "$HOST" --port "$PORT" --workers 1 "${ALLOWED[@]}" "${app[@]}" \
            >"$dir/server.log" 2>&1 </dev/null
    ) &
    echo $! >"$PIDFILE"
    for _ in $(seq 240); do
        if healthy; then
            check_accepted
            echo "$URL"
            return
        fi
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
