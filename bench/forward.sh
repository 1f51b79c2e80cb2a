#!/usr/bin/env bash
# The forward path against nginx, side by side on this machine in one run.
#
#   bench/forward.sh            (DURATION=10 CONNECTIONS=32 THREADS=2 RUNS=3 MODES="http https")
#
# One nginx upstream requires client certificates (ssl_verify_client on) and answers a small
# body. Two paths reach it with the same client certificate, under the same wrk load with
# keep-alive:
#   gateway: wrk -> mtls-gateway /mtls/account/bench1 (Bearer token, mapped certificate) -> upstream
#   nginx:   wrk -> nginx proxy_pass https (proxy_ssl_certificate, proxy_ssl_verify on,
#            upstream keepalive) -> upstream
# Each listener mode starts with a 2 s warm-up of both paths (not measured), so that both
# have filled their upstream keep-alive pools; then runs alternate between the two; medians
# of RUNS runs are reported, with their ratio, the
# median of the ratios of each pair of runs side by side (steadier when the machine's speed
# drifts), and the first-request latency of a cold identity (secret fetch + PKCS#12 parse +
# handshake).
# Each run also reports the CPU time (user + system, from /proc) the gateway's process, or the
# nginx proxy's workers, spent per request: the two compete with wrk and the upstream for the
# same cores, so the one that needs less CPU per request can serve more.
# Each mode of MODES is measured: `http` (wrk speaks plain HTTP to the gateway and to the nginx
# proxy) and `https` (both listeners speak TLS with the same certificate; wrk keeps its
# connections, so handshakes happen once per connection).
# Needs wrk and nginx (Debian packages), curl, python3, openssl.
#
# CALLGRIND=1 counts instead of timing: the gateway runs under valgrind's callgrind, wrk sends
# forwards for CALLGRIND_SECONDS (10) on 8 connections, and the script prints the instructions
# the gateway executed per forwarded request (counters zeroed after start-up and a 2 s warm-up
# on the same connections count, so that no upstream handshake is in the figure).
# CALLGRIND=nginx counts the nginx proxy the same way (one process: master_process off), for
# the same requests through its path. Instruction counts repeat to within about 1 % whatever
# else the machine does, so they compare two builds where timings on this shared machine
# cannot. They count user space only, not the kernel's work. CALLGRIND_OUT=<directory> keeps the
# dump there for `callgrind_annotate --inclusive=yes <directory>/callgrind.out.*` (where the
# instructions go). Valgrind runs SHA-256 without the CPU's SHA extensions: the token digest
# counts about 16,800 instructions it does not cost natively. CALLGRIND_LISTENER=https counts
# with both listeners speaking TLS; the counted wrk run opens its 8 connections anew, so 8
# listener handshakes (RSA-2048 signatures) are in both proxies' figures: about 5,000
# instructions per request over 6 s, so compare builds with CALLGRIND_SECONDS=20 or more.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${DURATION:-10}"; connections="${CONNECTIONS:-32}"; threads="${THREADS:-2}"; runs="${RUNS:-3}"
callgrind="${CALLGRIND:-}"
for tool in wrk nginx curl openssl python3 ${callgrind:+valgrind callgrind_control}; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install wrk nginx curl openssl)" >&2; exit 1; }
done
[ -n "${GATEWAY_BIN:-}" ] || cargo build --release --bin mtls-gateway -q
[ -f target/test-fixtures/p12/rsa2048.key ] || cargo test -q -p mtls-pki --test intake every_source >/dev/null
fixtures=$(pwd)/target/test-fixtures/p12
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream_port=$(free_port); proxy_port=$(free_port); proxy_tls_port=$(free_port); gateway_port=$(free_port)
modes="${MODES:-http https}"

# Server PKI for the upstream; the client identity is the fixtures' RSA-2048 leaf with its chain.
( cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=Bench CA" \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
  cat "$fixtures/rsa2048.pem" "$fixtures/int.pem" > client-chain.pem
  # The listeners' certificate (the gateway's and the nginx proxy's, for the https mode).
  openssl req -newkey rsa:2048 -nodes -keyout listener.key -out listener.csr -subj "/CN=localhost" 2>/dev/null
  openssl x509 -req -in listener.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out listener.pem -days 2 -extfile server.ext 2>/dev/null )

# Two nginx instances: the upstream, and the peer proxy. They are separate processes, as the
# gateway and the upstream are: one nginx serving both roles could hand a request from its
# proxy side to its upstream side inside one worker, a shortcut no separate proxy has.
nginx_common() { # name
  mkdir -p "$work/$1"
  cat <<COMMON
daemon off;
worker_processes auto;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
COMMON
}
temp_paths() { # name
  echo "client_body_temp_path $work/$1/body; proxy_temp_path $work/$1/proxy; fastcgi_temp_path $work/$1/fastcgi; uwsgi_temp_path $work/$1/uwsgi; scgi_temp_path $work/$1/scgi;"
}
{ nginx_common upstream; cat <<NGINX
http {
    access_log off;
    $(temp_paths upstream)
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$upstream_port ssl;
        ssl_certificate $work/server.pem;
        ssl_certificate_key $work/server.key;
        ssl_client_certificate $fixtures/root.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        location / { default_type text/plain; return 200 "ok \$ssl_client_s_dn\n"; }
    }
}
NGINX
} > "$work/upstream.conf"
{ nginx_common proxy; cat <<NGINX
http {
    access_log off;
    $(temp_paths proxy)
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$upstream_port; keepalive 64; }
    server {
        listen 127.0.0.1:$proxy_port;
        listen 127.0.0.1:$proxy_tls_port ssl;
        ssl_certificate $work/listener.pem;
        ssl_certificate_key $work/listener.key;
        location / {
            proxy_pass https://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate $work/client-chain.pem;
            proxy_ssl_certificate_key $fixtures/rsa2048.key;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $work/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }
    }
}
NGINX
} > "$work/proxy.conf"
nginx -c "$work/upstream.conf" -p "$work/upstream" &
upstream_pid=$!
if [ "$callgrind" = nginx ]; then
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    nginx -c "$work/proxy.conf" -p "$work/proxy" -g "master_process off;" >"$work/valgrind.log" 2>&1 &
else
  nginx -c "$work/proxy.conf" -p "$work/proxy" &
fi
nginx_pid=$!
export MTLS_GATEWAY__DATA_DIR="$work/data" MTLS_GATEWAY__SERVER__LISTEN="127.0.0.1:$gateway_port" \
  MTLS_GATEWAY__LOG__LEVEL=warn MTLS_GATEWAY__EGRESS__ALLOW_CIDRS='["127.0.0.1/32"]' \
  MTLS_GATEWAY__TLS__TRUST_ROOTS="[\"$work/ca.pem\"]"
bin="${GATEWAY_BIN:-target/release/mtls-gateway}"   # GATEWAY_BIN: measure another build
wrap=()
[ -n "$callgrind" ] && [ "$callgrind" != nginx ] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out")
gateway_pid=""
trap 'kill $gateway_pid $nginx_pid $upstream_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
start_gateway() { # http|https
  [ -n "$gateway_pid" ] && { kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; }
  if [ "$1" = https ]; then
    MTLS_GATEWAY__SERVER__TLS__CERT_FILE="$work/listener.pem" MTLS_GATEWAY__SERVER__TLS__KEY_FILE="$work/listener.key" \
      "${wrap[@]}" "$bin" serve >>"$work/gateway.log" 2>&1 &
  else
    "${wrap[@]}" "$bin" serve >>"$work/gateway.log" 2>&1 &
  fi
  gateway_pid=$!
  for _ in $(seq 1 600); do curl -fsk "$1://127.0.0.1:$gateway_port/readyz" >/dev/null && return; sleep 0.1; done
  echo "the gateway did not start" >&2; cat "$work/gateway.log" >&2; exit 1
}
start_gateway http
token=$("$bin" token issue --account bench1 --privileges MTLS_WRITE_INTERNAL,MTLS_FORWARD --ttl 2h)
target="https://localhost:$upstream_port/"
p12=$(base64 -w0 "$fixtures/openssl-default-rsa2048.p12")
certificate=$(curl -fs -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "[{\"name\":\"bench\",\"p12\":\"$p12\",\"password\":\"fixture-secret\"}]" \
  "http://127.0.0.1:$gateway_port/mtls/account/bench1/certificates" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["successfulySavedCertificates"][0]["id"])')
curl -fs -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "[{\"name\":\"bench\",\"certificationId\":\"$certificate\",\"serviceId\":\"1\",\"url\":\"$target\",\"siteId\":\"bench1\"}]" \
  "http://127.0.0.1:$gateway_port/api/account/bench1/configuration/ac-common/mtls?v=3.0"

forward() { curl -s -o "$work/out" -w "$1" -H "Authorization: Bearer $token" -H "LP-forward-url: $target" \
  -H "LP-service-name: IDP" "http://127.0.0.1:$gateway_port/mtls/account/bench1"; }
cold=$(forward '%{time_total}')
grep -q "CN=client-rsa2048" "$work/out" || { echo "the upstream did not see the mapped certificate" >&2; cat "$work/out" >&2; exit 1; }
warm=$(forward '%{time_total}')
for _ in $(seq 1 300); do curl -fs -o /dev/null "http://127.0.0.1:$proxy_port/" && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$proxy_port/" | grep -q "CN=client-rsa2048" || { echo "the nginx peer is not presenting the certificate" >&2; exit 1; }
echo "first request of a cold identity: $(python3 -c "print(round($cold*1000,1))") ms (warm: $(python3 -c "print(round($warm*1000,1))") ms)"

cat >"$work/gateway.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["LP-forward-url"] = "$target"
wrk.headers["LP-service-name"] = "IDP"
LUA
if [ -n "$callgrind" ]; then
  if [ "${CALLGRIND_LISTENER:-http}" = https ]; then
    scheme=https; nginx_port=$proxy_tls_port
    [ "$callgrind" = nginx ] || start_gateway https
  else scheme=http; nginx_port=$proxy_port; fi
  if [ "$callgrind" = nginx ]; then load=(wrk -t1 -c8 "$scheme://127.0.0.1:$nginx_port/"); counted="the nginx proxy"
  else load=(wrk -t1 -c8 -s "$work/gateway.lua" "$scheme://127.0.0.1:$gateway_port/mtls/account/bench1"); counted="the gateway"; fi
  "${load[@]}" -d2s >/dev/null   # warm-up: every connection's upstream handshake happens here
  callgrind_control -z >/dev/null 2>&1
  "${load[@]}" -d"${CALLGRIND_SECONDS:-10}s" >"$work/wrk.out"
  callgrind_control -d >/dev/null 2>&1
  sleep 1
  requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  instructions=$(cat "$work"/callgrind.out.* | awk '/^totals:/ {sum += $2} END {print sum}')
  echo "instructions per forwarded request ($counted, user space): $((instructions / requests)) ($requests requests)"
  [ -z "${CALLGRIND_OUT:-}" ] || { mkdir -p "$CALLGRIND_OUT"; cp "$work"/callgrind.out.* "$CALLGRIND_OUT"/; }
  exit 0
fi

# CPU time (user + system, clock ticks) of the processes given, from /proc: the gateway's
# process, or the nginx proxy's workers.
cpu_ticks() { local user=0 sys=0 pid; for pid in "$@"; do read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat"); user=$((user + u)); sys=$((sys + s)); done; echo "$user $sys"; }
measure() { # name url [script]
  local out pids before
  if [ "$1" = gateway ]; then pids=$gateway_pid; else pids=$(pgrep -P "$nginx_pid" | tr '\n' ' '); fi
  # shellcheck disable=SC2086
  read -r user_before sys_before < <(cpu_ticks $pids)
  if [ -n "${3:-}" ]; then out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$3" "$2")
  else out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$2"); fi
  local user_after sys_after
  # shellcheck disable=SC2086
  read -r user_after sys_after < <(cpu_ticks $pids)
  local user_ticks=$((user_after - user_before)) sys_ticks=$((sys_after - sys_before))
  local rps p50 p99 errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  # CPU microseconds per request: ticks / CLK_TCK / requests.
  local requests per_tick
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  per_tick=$(python3 -c "print(1e6 / $(getconf CLK_TCK) / $requests)")
  # name, requests/s, p50, p99, non-2xx, CPU, user CPU, system CPU (microseconds per request)
  python3 -c "u, s = $user_ticks * $per_tick, $sys_ticks * $per_tick; print('$1 $rps $p50 $p99 ${errors:-0}', round(u + s, 1), round(u, 1), round(s, 1))"
}
report() { # results-file
python3 - "$1" <<'PY'
import statistics, sys
def ms(text):
    value = float(text.rstrip("usm")) if text[-2:] in ("us", "ms") else float(text.rstrip("s"))
    return value / 1000 if text.endswith("us") else value * 1000 if not text.endswith("ms") else value
rows = [line.split() for line in open(sys.argv[1])]
summary = {}
for name in ("gateway", "nginx"):
    mine = [row for row in rows if row[0] == name]
    summary[name] = (statistics.median(float(r[1]) for r in mine), statistics.median(ms(r[2]) for r in mine),
                     statistics.median(ms(r[3]) for r in mine), sum(int(r[4]) for r in mine),
                     statistics.median(float(r[5]) for r in mine), statistics.median(float(r[6]) for r in mine),
                     statistics.median(float(r[7]) for r in mine))
    rps, p50, p99, errors, cpu, user, system = summary[name]
    print(f"{name:8} median of {len(mine)}: {rps:9.0f} requests/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"non-2xx {errors}, CPU {cpu:.1f} us/request (user {user:.1f}, system {system:.1f})")
print(f"ratio gateway/nginx: throughput {summary['gateway'][0] / summary['nginx'][0]:.2f}, "
      f"p99 {summary['gateway'][2] / summary['nginx'][2]:.2f}, "
      f"CPU per request {summary['gateway'][4] / summary['nginx'][4]:.2f} (lower is better for both)")
# Each gateway run against the nginx run right after it: the machine's speed drifts between
# runs on a shared host, and a pair sees the same drift, so the median of the pairs' ratios
# moves less than the ratio of the medians.
pairs = [(g, n) for g, n in zip([r for r in rows if r[0] == "gateway"], [r for r in rows if r[0] == "nginx"])]
print(f"paired runs, median of {len(pairs)} ratios: "
      f"throughput {statistics.median(float(g[1]) / float(n[1]) for g, n in pairs):.2f}, "
      f"p99 {statistics.median(ms(g[3]) / ms(n[3]) for g, n in pairs):.2f}, "
      f"CPU per request {statistics.median(float(g[5]) / float(n[5]) for g, n in pairs):.2f}")
PY
}
for mode in $modes; do
  [ "$mode" = https ] && start_gateway https
  results="$work/results-$mode"
  if [ "$mode" = https ]; then gateway_url="https://127.0.0.1:$gateway_port/mtls/account/bench1"; nginx_url="https://127.0.0.1:$proxy_tls_port/"
  else gateway_url="http://127.0.0.1:$gateway_port/mtls/account/bench1"; nginx_url="http://127.0.0.1:$proxy_port/"; fi
  echo "== $mode listeners"
  # Warm-up, not measured: both proxies fill their upstream keep-alive pools (the gateway was
  # just restarted for https, with a cold identity) before the first measured run.
  wrk -t"$threads" -c"$connections" -d2s -s "$work/gateway.lua" "$gateway_url" >/dev/null
  wrk -t"$threads" -c"$connections" -d2s "$nginx_url" >/dev/null
  for run in $(seq 1 "$runs"); do
    measure gateway "$gateway_url" "$work/gateway.lua" | tee -a "$results"
    measure nginx "$nginx_url" | tee -a "$results"
  done
  report "$results"
done
echo "(wrk -t$threads -c$connections -d${duration}s with keep-alive; $(nproc) cores shared by wrk, nginx and the gateway)"
