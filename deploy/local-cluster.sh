#!/usr/bin/env bash
# A rollout rehearsal on one machine: nginx on a loopback port in front of three `switchyard serve`
# replicas that share one PostgreSQL and one Redis (or Redis Cluster), all from the environment.
#
#   deploy/local-cluster.sh start     start the replicas (waits for /health/ready), then nginx
#   deploy/local-cluster.sh rollout   restart the replicas one at a time, as a rolling update does
#   deploy/local-cluster.sh status    what runs, and each replica's readiness
#   deploy/local-cluster.sh stop      stop nginx, then drain and stop the replicas
#
# The replicas read the usual SWITCHYARD_* variables (SWITCHYARD_DATABASE_URL, SWITCHYARD_REDIS_URL,
# SWITCHYARD_REDIS_CLUSTER, SWITCHYARD_MASTER_KEY, SWITCHYARD_CONFIG, ...). The database must be
# migrated first (`switchyard migrate`). The rehearsal itself is set with:
#   SY_LC_DIR          state: nginx config, pid files, logs, spools   (default ./local-cluster)
#   SY_LC_NGINX_PORT   where nginx listens on 127.0.0.1               (default 8088)
#   SY_LC_PORTS        the replicas' loopback ports                    (default "4101 4102 4103")
#   SY_LC_SERVE        the command that runs the gateway               (default "switchyard")
#   SY_LC_DRAIN_S      how long a replica may drain after SIGTERM      (default 40; the server's own
#                      graceful shutdown is 30 s, then the spend writer flushes)
#
# One replica's restart, in the order a Kubernetes rolling update with a preStop hook follows:
#   1. nginx stops sending it new requests: its upstream entry is marked `down` and nginx reloads
#      (the endpoint leaves the Service). Requests already proxied to it carry on.
#   2. SIGTERM: the gateway stops accepting, finishes what it accepted (streams included), flushes
#      its spend records, exits. Waited for, up to SY_LC_DRAIN_S, then SIGKILL (reported).
#   3. Started again on the same port; waited for until /health/ready answers 200.
#   4. Marked up in nginx again, which reloads; then the next replica.
set -euo pipefail

DIR=$(mkdir -p "${SY_LC_DIR:-./local-cluster}" && cd "${SY_LC_DIR:-./local-cluster}" && pwd)
NGINX_PORT=${SY_LC_NGINX_PORT:-8088}
read -r -a PORTS <<<"${SY_LC_PORTS:-4101 4102 4103}"
read -r -a SERVE <<<"${SY_LC_SERVE:-switchyard}"
DRAIN_S=${SY_LC_DRAIN_S:-40}
NGINX_DIR="$DIR/nginx"
NGINX=(nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log")

say() { echo "local-cluster: $*" >&2; }

need() {
  command -v "$1" >/dev/null || { say "needs $1 (Debian: apt-get install -y $2)"; exit 2; }
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The nginx config, with the replica at index $1 (if any) marked down.
write_nginx_conf() {
  local down=${1:--1} servers="" i
  for i in "${!PORTS[@]}"; do
    if [ "$i" = "$down" ]; then
      servers+="    server 127.0.0.1:${PORTS[$i]} down;"$'\n'
    else
      servers+="    server 127.0.0.1:${PORTS[$i]};"$'\n'
    fi
  done
  mkdir -p "$NGINX_DIR/tmp"
  cat >"$NGINX_DIR/nginx.conf.new" <<EOF
worker_processes 2;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 4096; }
http {
  log_format switchyard '\$remote_addr "\$request" \$status upstream=\$upstream_addr '
                        'upstream_status=\$upstream_status time=\$request_time '
                        'request_id=\$upstream_http_x_switchyard_request_id';
  access_log $NGINX_DIR/access.log switchyard;
  client_body_temp_path $NGINX_DIR/tmp/body;
  proxy_temp_path $NGINX_DIR/tmp/proxy;
  fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
  uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
  scgi_temp_path $NGINX_DIR/tmp/scgi;
  client_max_body_size 32m;
  # No idle client connections: a reload closes an old worker's idle ones, and a client that sent a
  # request on one at that instant would see the connection drop. New connections meet the listening
  # socket, which the master keeps across reloads. (A production balancer changes its upstreams
  # without reloading, or clients retry on a dropped idle connection.)
  keepalive_timeout 0;

  upstream switchyard {
$servers  }

  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://switchyard;
      proxy_http_version 1.1;
      # One connection per request to a replica: no idle upstream connection for a replica to close
      # while nginx sends on it (a POST sent that way is not retried, below). Keeping them needs the
      # upstream keepalive_timeout below the gateway's own (uvicorn: 5 s).
      proxy_set_header Connection "close";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      # Streams go out token by token; the request body is buffered whole, so it can be resent.
      proxy_buffering off;
      proxy_request_buffering on;
      proxy_connect_timeout 2s;
      proxy_read_timeout 600s;
      proxy_send_timeout 600s;
      # Another replica gets the request when this one cannot be reached, or answers 502/503. nginx
      # never resends a POST once any of it reached a replica (no non_idempotent here): that replica
      # may have called the provider already, and a resend would run, and bill, the call twice. So a
      # POST moves on only when the connection failed before it was sent (a replica stopped or not
      # started: connection refused), which is what a restart looks like to nginx if it still
      # routes there; the reload in step 1 keeps it from routing there in the first place.
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries 3;
      proxy_next_upstream_timeout 10s;
    }
  }
}
EOF
  mv "$NGINX_DIR/nginx.conf.new" "$NGINX_DIR/nginx.conf"
}

nginx_workers() { ps -o pid= --ppid "$(cat "$NGINX_DIR/nginx.pid")" | tr -d ' ' | sort; }

# Reload, and return once the new workers run (the old ones stop accepting as they start).
reload_nginx() {
  local before after
  before=$(nginx_workers)
  "${NGINX[@]}" -s reload
  for _ in $(seq 100); do
    after=$(nginx_workers)
    if [ -n "$(comm -13 <(echo "$before") <(echo "$after"))" ]; then
      sleep 0.2 # the master signals the old workers right after forking the new ones
      return 0
    fi
    sleep 0.05
  done
  say "nginx did not start new workers after a reload"
  return 1
}

start_replica() {
  local i=$1 port=${PORTS[$1]} rdir="$DIR/replica-$1"
  mkdir -p "$rdir"
  (
    cd "$rdir"
    SWITCHYARD_SPOOL_DIR="$rdir/spool" nohup "${SERVE[@]}" serve --host 127.0.0.1 --port "$port" \
      >>"$rdir/serve.log" 2>&1 </dev/null &
    echo $! >"$rdir/pid"
  )
}

wait_ready() {
  local i=$1 port=${PORTS[$1]} deadline=$((SECONDS + 90))
  while [ "$SECONDS" -lt "$deadline" ]; do
    alive "$DIR/replica-$i/pid" || { say "replica $i exited; see $DIR/replica-$i/serve.log"; return 1; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ]; then
      return 0
    fi
    sleep 0.1
  done
  say "replica $i not ready after 90 s; see $DIR/replica-$i/serve.log"
  return 1
}

stop_replica() {
  local i=$1 pidfile="$DIR/replica-$1/pid" pid deadline
  alive "$pidfile" || return 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  deadline=$((SECONDS + DRAIN_S))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "replica $i still draining after ${DRAIN_S}s: killed"
      kill -KILL "$pid"
      break
    fi
    sleep 0.05
  done
  rm -f "$pidfile"
}

cmd_start() {
  need nginx nginx
  need curl curl
  local i
  for i in "${!PORTS[@]}"; do
    alive "$DIR/replica-$i/pid" || start_replica "$i"
  done
  for i in "${!PORTS[@]}"; do wait_ready "$i"; done
  write_nginx_conf
  if alive "$NGINX_DIR/nginx.pid"; then reload_nginx; else "${NGINX[@]}"; fi
  say "nginx on http://127.0.0.1:$NGINX_PORT in front of ${PORTS[*]}"
}

cmd_rollout() {
  alive "$NGINX_DIR/nginx.pid" || { say "not running (start it first)"; exit 1; }
  local i t0 t1 t2
  for i in "${!PORTS[@]}"; do
    t0=$SECONDS
    write_nginx_conf "$i"
    reload_nginx
    t1=$SECONDS
    stop_replica "$i"
    t2=$SECONDS
    start_replica "$i"
    wait_ready "$i"
    write_nginx_conf
    reload_nginx
    say "replica $i (port ${PORTS[$i]}) restarted in $((SECONDS - t0))s" \
      "(out of nginx $((t1 - t0))s, drained $((t2 - t1))s, started and ready $((SECONDS - t2))s)"
  done
}

cmd_status() {
  local i code
  if alive "$NGINX_DIR/nginx.pid"; then say "nginx: running on 127.0.0.1:$NGINX_PORT"; else say "nginx: stopped"; fi
  for i in "${!PORTS[@]}"; do
    if alive "$DIR/replica-$i/pid"; then
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORTS[$i]}/health/ready" || true)
      say "replica $i: pid $(cat "$DIR/replica-$i/pid"), port ${PORTS[$i]}, /health/ready $code"
    else
      say "replica $i: stopped"
    fi
  done
}

cmd_stop() {
  local i
  if alive "$NGINX_DIR/nginx.pid"; then
    "${NGINX[@]}" -s quit
    for _ in $(seq 200); do alive "$NGINX_DIR/nginx.pid" || break; sleep 0.05; done
  fi
  for i in "${!PORTS[@]}"; do stop_replica "$i"; done
}

case "${1:-}" in
  start) cmd_start ;;
  rollout) cmd_rollout ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  *)
    echo "usage: $0 start|rollout|status|stop" >&2
    exit 2
    ;;
esac
