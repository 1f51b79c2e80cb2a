#!/usr/bin/env bash
# The forward path against nginx, side by side on this machine in one run, with many tenants.
#
#   bench/forward.sh   (DURATION=10 CONNECTIONS=32 THREADS=2 RUNS=3 MODES="http https"
#                       TENANTS="1 100" UPSTREAMS="h2 http1")
#
# N tenants (each of TENANTS; TENANTS="1 100 1000" for the large case), each an account tN with
# its own freshly made key and certificate (RSA-2048 and P-256 alternating, bench/tenants.py),
# each mapped to its own URL on one nginx upstream that requires client certificates
# (ssl_verify_client on) and answers a small body naming the certificate it saw. The upstream
# is measured twice: offering HTTP/2 by ALPN (`h2`; the gateway then speaks HTTP/2 to it, the
# nginx peer always HTTP/1.1) and HTTP/1.1 only (`http1`). Two paths reach it under the same
# wrk load with keep-alive, whose Lua script cycles over the N tenants:
#   gateway: wrk -> mtls-gateway /mtls/account/tN (Bearer token, mapped certificate) -> upstream
#   nginx:   wrk -> nginx /h2/tN or /h1/tN: one `location` per tenant with its
#            proxy_ssl_certificate (proxy_ssl_verify on), proxied to an `upstream` block of the
#            tenant's own (keepalive NGINX_KEEPALIVE, 32) -> upstream
#   nginx-shared (only with NGINX_SHARED=1): the same locations under /shared/, proxied to one
#            `upstream` block per upstream shared by every tenant (keepalive NGINX_KEEPALIVE):
#            the configuration issue 16 first measured. nginx's keep-alive cache is keyed by the
#            peer's address only, so a connection opened with one tenant's certificate carries
#            the next tenant's request: it does not keep tenants apart (the isolation check
#            below counts it), and is reported for comparison only.
# Isolation is checked on every path: the upstream answers with the path it was asked and the
# certificate it saw, and during the warm-up wrk's script counts the answers whose certificate
# is not the tenant's of the path ("isolation: X of Y answers carried another tenant's
# certificate"); the measured runs do not check (the check costs wrk time).
# Each case (upstream, tenants, listener mode) starts a fresh gateway process, then warms both
# paths up (not measured) until the gateway has loaded every identity and both have filled
# their upstream pools; then runs alternate between the two; medians of RUNS runs are
# reported, with their ratio, the median of the ratios of each pair of runs side by side
# (steadier when the machine's speed drifts), the gateway's upstream TLS handshakes of the
# whole case (full and resumed, from /metrics; and how many of them came after the warm-up,
# during the measured runs) and its resident memory (VmRSS after start, after
# the case, and its peak). The first-request latency of a cold identity (secret fetch + PKCS#12
# parse + handshake) is printed once, for tenant 1.
# Each run's line ends with the CPU ticks each upstream nginx worker spent during it (e.g.
# 216/0: every connection of the path reached one of the two workers).
# Each run also reports the CPU time (user + system, from /proc) the gateway's process, or the
# nginx proxy's workers, spent per request: the two compete with wrk and the upstream for the
# same cores, so the one that needs less CPU per request can serve more.
# Each mode of MODES is measured: `http` (wrk speaks plain HTTP to the gateway and to the nginx
# proxy) and `https` (both listeners speak TLS with the same certificate; wrk keeps its
# connections, so handshakes happen once per connection).
# The gateway reads its configuration from the environment too, so a setting can be measured
# as it is: e.g. MTLS_GATEWAY__FORWARD__UPSTREAM_HTTP2=never bench/forward.sh (HTTP/1.1 to
# the targets that offer HTTP/2).
# Needs wrk and nginx (Debian packages), curl, python3 with pyca/cryptography (.venv from
# scripts/test, or `pip install cryptography`), openssl.
#
# CALLGRIND=1 counts instead of timing: the gateway runs under valgrind's callgrind, wrk sends
# forwards for CALLGRIND_SECONDS (10) on 8 connections, and the script prints the instructions
# the gateway executed per forwarded request, for each tenant count of TENANTS and each
# upstream of UPSTREAMS (counters zeroed after start-up and a warm-up that loads every identity
# and opens the connections, so that no upstream handshake is in the figure): a per-request
# cost that grows with the number of tenants shows as a larger count at N than at 1.
# CALLGRIND=nginx counts the nginx proxy the same way (one process: master_process off), for
# the same requests through its path (CALLGRIND=nginx-shared: its path through the shared pool).
# Instruction counts repeat to within about 1 % whatever
# else the machine does, so they compare two builds where timings on this shared machine
# cannot. They count user space only, not the kernel's work. CALLGRIND_OUT=<directory> keeps the
# dumps there for `callgrind_annotate --inclusive=yes <directory>/callgrind.out.*` (where the
# instructions go). Valgrind runs SHA-256 without the CPU's SHA extensions: the token digest
# counts about 16,800 instructions it does not cost natively. CALLGRIND_LISTENER=https counts
# with both listeners speaking TLS; the counted wrk run opens its 8 connections anew, so 8
# listener handshakes (RSA-2048 signatures) are in both proxies' figures: about 5,000
# instructions per request over 6 s, so compare builds with CALLGRIND_SECONDS=20 or more.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${DURATION:-10}"; connections="${CONNECTIONS:-32}"; threads="${THREADS:-2}"; runs="${RUNS:-3}"
callgrind="${CALLGRIND:-}"; nginx_counted=""; tenant_counts="${TENANTS:-1 100}"; upstreams="${UPSTREAMS:-h2 http1}"
case $callgrind in nginx|nginx-shared) nginx_counted=$callgrind ;; esac
for tool in wrk nginx curl openssl python3 ${callgrind:+valgrind callgrind_control}; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install wrk nginx curl openssl)" >&2; exit 1; }
done
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
"$python" -c 'import cryptography' 2>/dev/null || { echo "pyca/cryptography is missing: run scripts/test once (it fills .venv) or pip install cryptography" >&2; exit 1; }
most=0
for n in $tenant_counts; do [ "$n" -gt "$most" ] && most=$n; done
[ "$most" -ge 1 ] || { echo "TENANTS must name at least one count of 1 or more" >&2; exit 1; }
[ -n "${GATEWAY_BIN:-}" ] || cargo build --release --bin mtls-gateway -q
# Thousands of upstream connections on both sides at 1000 tenants.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
h2_port=$(free_port); http1_port=$(free_port); proxy_port=$(free_port); proxy_tls_port=$(free_port); gateway_port=$(free_port)
modes="${MODES:-http https}"

# Server PKI for the upstream and the listeners; the tenants' keys and certificates.
( cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=Bench CA" \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
  # The listeners' certificate (the gateway's and the nginx proxy's, for the https mode).
  openssl req -newkey rsa:2048 -nodes -keyout listener.key -out listener.csr -subj "/CN=localhost" 2>/dev/null
  openssl x509 -req -in listener.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out listener.pem -days 2 -extfile server.ext 2>/dev/null )
echo "making $most tenants' keys and certificates"
"$python" bench/tenants.py make "$work/tenants" "$most"

# Two nginx instances: the upstream, and the peer proxy. They are separate processes, as the
# gateway and the upstream are: one nginx serving both roles could hand a request from its
# proxy side to its upstream side inside one worker, a shortcut no separate proxy has.
nginx_common() { # name
  mkdir -p "$work/$1"
  cat <<COMMON
daemon off;
worker_processes auto;
worker_rlimit_nofile 65536;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 30000; }
COMMON
}
temp_paths() { # name
  echo "client_body_temp_path $work/$1/body; proxy_temp_path $work/$1/proxy; fastcgi_temp_path $work/$1/fastcgi; uwsgi_temp_path $work/$1/uwsgi; scgi_temp_path $work/$1/scgi;"
}
upstream_tls="ssl_certificate $work/server.pem; ssl_certificate_key $work/server.key;
        ssl_client_certificate $work/tenants/ca.pem; ssl_verify_client on; ssl_verify_depth 2;"
{ nginx_common upstream; cat <<NGINX
http {
    access_log off;
    $(temp_paths upstream)
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$h2_port ssl http2;
        $upstream_tls
        location / { default_type text/plain; return 200 "ok \$uri \$ssl_client_s_dn\n"; }
    }
    server {
        listen 127.0.0.1:$http1_port ssl;
        $upstream_tls
        location / { default_type text/plain; return 200 "ok \$uri \$ssl_client_s_dn\n"; }
    }
}
NGINX
} > "$work/upstream.conf"
{ nginx_common proxy; cat <<NGINX
http {
    access_log off;
    $(temp_paths proxy)
    keepalive_requests 1000000;
    upstream backend_h2 { server 127.0.0.1:$h2_port; keepalive ${NGINX_KEEPALIVE:-32}; }
    upstream backend_http1 { server 127.0.0.1:$http1_port; keepalive ${NGINX_KEEPALIVE:-32}; }
$(for n in $(seq 1 "$most"); do
  echo "    upstream h2_t$n { server 127.0.0.1:$h2_port; keepalive ${NGINX_KEEPALIVE:-32}; }"
  echo "    upstream http1_t$n { server 127.0.0.1:$http1_port; keepalive ${NGINX_KEEPALIVE:-32}; }"
done)
    server {
        listen 127.0.0.1:$proxy_port;
        listen 127.0.0.1:$proxy_tls_port ssl;
        ssl_certificate $work/listener.pem;
        ssl_certificate_key $work/listener.key;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate $work/ca.pem;
        proxy_ssl_name localhost;
        proxy_ssl_server_name on;
        proxy_ssl_session_reuse on;
$(for n in $(seq 1 "$most"); do for upstream in h2 http1; do
  tenant_tls="proxy_ssl_certificate $work/tenants/t$n.chain.pem; proxy_ssl_certificate_key $work/tenants/t$n.key;"
  echo "        location = /$upstream/t$n { proxy_pass https://${upstream}_t$n/t$n; $tenant_tls }"
  echo "        location = /shared/$upstream/t$n { proxy_pass https://backend_$upstream/t$n; $tenant_tls }"
done; done)
    }
}
NGINX
} > "$work/proxy.conf"
nginx -c "$work/upstream.conf" -p "$work/upstream" &
upstream_pid=$!
if [ -n "$nginx_counted" ]; then
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.nginx" \
    nginx -c "$work/proxy.conf" -p "$work/proxy" -g "master_process off;" >"$work/valgrind.log" 2>&1 &
else
  nginx -c "$work/proxy.conf" -p "$work/proxy" &
fi
nginx_pid=$!
# Rate limits off for the set-up's thousands of configuration calls (forward has none).
export MTLS_GATEWAY__DATA_DIR="$work/data" MTLS_GATEWAY__SERVER__LISTEN="127.0.0.1:$gateway_port" \
  MTLS_GATEWAY__LOG__LEVEL=warn MTLS_GATEWAY__EGRESS__ALLOW_CIDRS='["127.0.0.1/32"]' \
  MTLS_GATEWAY__TLS__TRUST_ROOTS="[\"$work/ca.pem\"]" \
  MTLS_GATEWAY__RATE_LIMITS__CONFIGURATION__PER_IP_PER_SECOND=0 \
  MTLS_GATEWAY__RATE_LIMITS__CONFIGURATION__PER_ACCOUNT_PER_SECOND=0
bin="${GATEWAY_BIN:-target/release/mtls-gateway}"   # GATEWAY_BIN: measure another build
wrap=()
[ -n "$callgrind" ] && [ -z "$nginx_counted" ] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.gateway.%p")
gateway_pid=""
trap 'kill $gateway_pid $nginx_pid $upstream_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
start_gateway() { # http|https [wrapper...]
  local scheme=$1; shift
  [ -n "$gateway_pid" ] && { kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; }
  if [ "$scheme" = https ]; then
    MTLS_GATEWAY__SERVER__TLS__CERT_FILE="$work/listener.pem" MTLS_GATEWAY__SERVER__TLS__KEY_FILE="$work/listener.key" \
      "$@" "$bin" serve >>"$work/gateway.log" 2>&1 &
  else
    "$@" "$bin" serve >>"$work/gateway.log" 2>&1 &
  fi
  gateway_pid=$!
  for _ in $(seq 1 600); do curl -fsk "$scheme://127.0.0.1:$gateway_port/readyz" >/dev/null && return; sleep 0.1; done
  echo "the gateway did not start" >&2; cat "$work/gateway.log" >&2; exit 1
}
metric() { # scheme name-with-labels: its value in the gateway's /metrics, 0 when absent
  curl -fsk "$1://127.0.0.1:$gateway_port/metrics" | awk -v name="$2" '$1 == name {print $2; found=1} END {if (!found) print 0}'
}
rss_kib() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }
handshakes() { # scheme: the gateway's upstream handshakes so far, full and resumed
  echo $(($(metric "$1" 'mtls_forward_upstream_connections_total{handshake="full"}' | cut -d. -f1) +
    $(metric "$1" 'mtls_forward_upstream_connections_total{handshake="resumed"}' | cut -d. -f1)))
}
start_gateway http
token=$("$bin" token issue --account '*' --privileges MTLS_WRITE_INTERNAL,MTLS_FORWARD --ttl 4h)
echo "registering $most tenants (a certificate and two mappings each)"
"$python" bench/tenants.py register "$work/tenants" "$most" "http://127.0.0.1:$gateway_port" "$token" \
  "https://localhost:$h2_port/t" "https://localhost:$http1_port/t"

forward() { curl -s -o "$work/out" -w "$1" -H "Authorization: Bearer $token" -H "LP-forward-url: https://localhost:$h2_port/t1" \
  -H "LP-service-name: IDP" "http://127.0.0.1:$gateway_port/mtls/account/t1"; }
cold=$(forward '%{time_total}')
grep -q "CN=tenant-1" "$work/out" || { echo "the upstream did not see the mapped certificate" >&2; cat "$work/out" >&2; exit 1; }
warm=$(forward '%{time_total}')
for _ in $(seq 1 300); do curl -fs -o /dev/null "http://127.0.0.1:$proxy_port/h2/t1" && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$proxy_port/http1/t$most" | grep -q "CN=tenant-$most" || { echo "the nginx peer is not presenting the tenants' certificates" >&2; exit 1; }
echo "first request of a cold identity (tenant 1, RSA-2048): $(python3 -c "print(round($cold*1000,1))") ms (warm: $(python3 -c "print(round($warm*1000,1))") ms)"

lua() { # gateway|nginx|nginx-shared upstream tenants [check]: a wrk script cycling over the
  # tenants, each thread from its own start; with check, it counts the answers whose certificate
  # is not the tenant's of the path asked (the upstream answers "ok /tN <the subject it saw>")
  local port=$h2_port; [ "$2" = http1 ] && port=$http1_port
  cat <<LUA
local tenants, threads, i, started = $3, $threads, 0, 0
local all = {}
function setup(thread) thread:set("index", started); started = started + 1; table.insert(all, thread) end
function init(args) i = math.floor((index or 0) * tenants / threads) % tenants end
function request()
  i = i % tenants + 1
LUA
  case $1 in
    gateway) cat <<LUA
  return wrk.format(nil, "/mtls/account/t" .. i, {["Authorization"] = "Bearer $token",
    ["LP-forward-url"] = "https://localhost:$port/t" .. i, ["LP-service-name"] = "IDP"})
end
LUA
    ;;
    nginx) echo "  return wrk.format(nil, \"/$2/t\" .. i)"; echo end ;;
    nginx-shared) echo "  return wrk.format(nil, \"/shared/$2/t\" .. i)"; echo end ;;
  esac
  [ -n "${4:-}" ] && cat <<'LUA'
crossed, unreadable, seen = 0, 0, 0
function response(status, headers, body)
  seen = seen + 1
  local asked, saw = string.match(body or "", "^ok /t(%d+) .-CN=tenant%-(%d+)")
  if not asked then unreadable = unreadable + 1 elseif asked ~= saw then crossed = crossed + 1 end
end
function done(summary, latency, requests)
  local c, u, n = 0, 0, 0
  for _, t in ipairs(all) do c = c + t:get("crossed"); u = u + t:get("unreadable"); n = n + t:get("seen") end
  io.write(string.format("isolation: %d of %d answers carried another tenant's certificate (%d without one)\n", c, n, u))
end
LUA
  return 0
}
# Warm-up, not measured: until the gateway has loaded every identity of the case (a cold
# identity costs a secret read, a PKCS#12 parse and a handshake) and both paths have filled
# their upstream pools. At most WARMUP_LIMIT seconds (600).
warm_up() { # scheme gateway-url nginx-url tenants per-round-seconds
  # The rounds run the scripts that check isolation; the last round of each path is reported.
  # One more round once every identity is loaded: each worker thread opens its own connections.
  local loaded=0 deadline=$((SECONDS + ${WARMUP_LIMIT:-600})) out peer last=""
  while :; do
    out=$(wrk -t"$threads" -c"$connections" -d"$5s" -s "$work/gateway-check.lua" "$2")
    [ -n "$last" ] && break
    loaded=$(metric "$1" mtls_forward_identities_loaded)
    [ "${loaded%.*}" -ge "$4" ] && last=1
    [ "$SECONDS" -ge "$deadline" ] && { echo "warm-up: only $loaded of $4 identities loaded" >&2; break; }
  done
  echo "gateway $(echo "$out" | grep '^isolation:')"
  [ -z "$3" ] && return 0
  # nginx has no counter of its pools: its rounds go on until one answers fewer than 5 % more
  # requests than the one before (its connections, a full handshake each, are open by then).
  local before answered
  for peer in $peers; do
    before=0
    while :; do
      out=$(wrk -t"$threads" -c"$connections" -d"$5s" -s "$work/$peer-check.lua" "$3")
      answered=$(echo "$out" | awk '/requests in/ {print $1}')
      [ "$((answered * 100))" -lt "$((before * 105))" ] && break
      [ "$SECONDS" -ge "$deadline" ] && break
      before=$answered
    done
    echo "$peer $(echo "$out" | grep '^isolation:')"
  done
}
scripts() { # upstream tenants: the wrk scripts of every path, measuring and checking
  local path
  for path in gateway $peers; do
    lua "$path" "$1" "$2" >"$work/$path.lua"; lua "$path" "$1" "$2" check >"$work/$path-check.lua"
  done
}
peers=nginx
[ -n "${NGINX_SHARED:-}" ] && peers="nginx nginx-shared"
[ "$nginx_counted" = nginx-shared ] && peers="nginx-shared"

if [ -n "$callgrind" ]; then
  if [ "${CALLGRIND_LISTENER:-http}" = https ]; then scheme=https; nginx_port=$proxy_tls_port
  else scheme=http; nginx_port=$proxy_port; fi
  for upstream in $upstreams; do
    for n in $tenant_counts; do
      scripts "$upstream" "$n"; [ -n "$nginx_counted" ] && cp "$work/$nginx_counted.lua" "$work/nginx.lua"
      if [ -n "$nginx_counted" ]; then
        load=(wrk -t1 -c8 -s "$work/nginx.lua" "$scheme://127.0.0.1:$nginx_port/"); counted="the nginx proxy"
        "${load[@]}" -d"$((2 + n / 20))s" >/dev/null
        callgrind_control -z >/dev/null 2>&1
      else
        start_gateway "$scheme" "${wrap[@]}"
        load=(wrk -t1 -c8 -s "$work/gateway.lua" "$scheme://127.0.0.1:$gateway_port/mtls/account/t1"); counted="the gateway"
        # Under valgrind a cold identity costs tens of times its native time: warm up in rounds.
        warm_up "$scheme" "$scheme://127.0.0.1:$gateway_port/mtls/account/t1" "" "$n" 5
        "${load[@]}" -d2s >/dev/null
        callgrind_control -z "$gateway_pid" >/dev/null 2>&1
      fi
      "${load[@]}" -d"${CALLGRIND_SECONDS:-10}s" >"$work/wrk.out"
      if [ -n "$nginx_counted" ]; then callgrind_control -d >/dev/null 2>&1; dumps="$work/callgrind.nginx."
      else callgrind_control -d "$gateway_pid" >/dev/null 2>&1; dumps="$work/callgrind.gateway.$gateway_pid."; fi
      sleep 1
      requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
      instructions=$(cat "$dumps"* | awk '/^totals:/ {sum += $2} END {print sum}')
      echo "instructions per forwarded request ($counted, user space, $upstream upstream, $n tenants): $((instructions / requests)) ($requests requests)"
      mkdir -p "$work/dumps/$upstream-$n"; mv "$dumps"* "$work/dumps/$upstream-$n/"
    done
  done
  [ -z "${CALLGRIND_OUT:-}" ] || { mkdir -p "$CALLGRIND_OUT"; cp -r "$work"/dumps/* "$CALLGRIND_OUT"/; }
  exit 0
fi

# CPU time (user + system, clock ticks) of the processes given, from /proc: the gateway's
# process, or the nginx proxy's workers.
cpu_ticks() { local user=0 sys=0 pid; for pid in "$@"; do read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat"); user=$((user + u)); sys=$((sys + s)); done; echo "$user $sys"; }
idle_ticks() { awk '$1 == "cpu" {print $5 + $6; t = 0; for (i = 2; i <= NF; i++) t += $i; print t}' /proc/stat | paste -sd' '; }
measure() { # name url script
  # Besides the proxy's own CPU per request: the upstream nginx's (what the path costs the
  # target) and the machine's idle share (near 0: the cores were the limit).
  local out pids upstream_pids
  if [ "$1" = gateway ]; then pids=$gateway_pid; else pids=$(pgrep -P "$nginx_pid" | tr '\n' ' '); fi
  upstream_pids=$(pgrep -P "$upstream_pid" | tr '\n' ' ')
  local user_before sys_before up_user_before up_sys_before idle_before all_before
  # shellcheck disable=SC2086
  read -r user_before sys_before < <(cpu_ticks $pids)
  # shellcheck disable=SC2086
  read -r up_user_before up_sys_before < <(cpu_ticks $upstream_pids)
  read -r idle_before all_before < <(idle_ticks)
  # Each upstream worker's ticks too: whether the path's connections reach both of them.
  local worker; local -A worker_before=()
  for worker in $upstream_pids; do read -r worker_before[$worker] < <(cpu_ticks "$worker" | awk '{print $1 + $2}'); done
  out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$3" "$2")
  local user_after sys_after up_user_after up_sys_after idle_after all_after
  # shellcheck disable=SC2086
  read -r user_after sys_after < <(cpu_ticks $pids)
  # shellcheck disable=SC2086
  read -r up_user_after up_sys_after < <(cpu_ticks $upstream_pids)
  read -r idle_after all_after < <(idle_ticks)
  local split="" after
  for worker in $upstream_pids; do
    read -r after < <(cpu_ticks "$worker" | awk '{print $1 + $2}')
    split="$split${split:+/}$((after - worker_before[$worker]))"
  done
  local user_ticks=$((user_after - user_before)) sys_ticks=$((sys_after - sys_before))
  local up_ticks=$((up_user_after + up_sys_after - up_user_before - up_sys_before))
  local rps p50 p99 errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  # CPU microseconds per request: ticks / CLK_TCK / requests.
  local requests per_tick
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  per_tick=$(python3 -c "print(1e6 / $(getconf CLK_TCK) / $requests)")
  # name, requests/s, p50, p99, non-2xx, CPU, user CPU, system CPU (microseconds per request),
  # the upstream's CPU per request, the machine's idle percentage, each upstream worker's ticks
  python3 -c "u, s = $user_ticks * $per_tick, $sys_ticks * $per_tick; print('$1 $rps $p50 $p99 ${errors:-0}', round(u + s, 1), round(u, 1), round(s, 1), round($up_ticks * $per_tick, 1), round(100 * ($idle_after - $idle_before) / max(1, $all_after - $all_before)), '${split:-0}')"
}
report() { # results-file
python3 - "$1" <<'PY'
import statistics, sys
def ms(text):
    value = float(text.rstrip("usm")) if text[-2:] in ("us", "ms") else float(text.rstrip("s"))
    return value / 1000 if text.endswith("us") else value * 1000 if not text.endswith("ms") else value
rows = [line.split() for line in open(sys.argv[1])]
names = list(dict.fromkeys(row[0] for row in rows))
summary = {}
for name in names:
    mine = [row for row in rows if row[0] == name]
    summary[name] = (statistics.median(float(r[1]) for r in mine), statistics.median(ms(r[2]) for r in mine),
                     statistics.median(ms(r[3]) for r in mine), sum(int(r[4]) for r in mine),
                     statistics.median(float(r[5]) for r in mine), statistics.median(float(r[6]) for r in mine),
                     statistics.median(float(r[7]) for r in mine), statistics.median(float(r[8]) for r in mine),
                     statistics.median(float(r[9]) for r in mine))
    rps, p50, p99, errors, cpu, user, system, upstream, idle = summary[name]
    print(f"{name:12} median of {len(mine)}: {rps:9.0f} requests/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"non-2xx {errors}, CPU {cpu:.1f} us/request (user {user:.1f}, system {system:.1f}), "
          f"upstream's CPU {upstream:.1f} us/request, machine idle {idle:.0f} %")
for peer in names[1:]:
    print(f"ratio gateway/{peer}: throughput {summary['gateway'][0] / summary[peer][0]:.2f}, "
          f"p99 {summary['gateway'][2] / summary[peer][2]:.2f}, "
          f"CPU per request {summary['gateway'][4] / summary[peer][4]:.2f} (lower is better for both)")
    # Each gateway run against the peer's run of the same round: the machine's speed drifts
    # between runs on a shared host, and a round sees the same drift, so the median of the
    # rounds' ratios moves less than the ratio of the medians.
    pairs = list(zip([r for r in rows if r[0] == "gateway"], [r for r in rows if r[0] == peer]))
    print(f"  paired runs, median of {len(pairs)} ratios: "
          f"throughput {statistics.median(float(g[1]) / float(n[1]) for g, n in pairs):.2f}, "
          f"p99 {statistics.median(ms(g[3]) / ms(n[3]) for g, n in pairs):.2f}, "
          f"CPU per request {statistics.median(float(g[5]) / float(n[5]) for g, n in pairs):.2f}")
PY
}
for upstream in $upstreams; do
  for n in $tenant_counts; do
    scripts "$upstream" "$n"
    for mode in $modes; do
      start_gateway "$mode"
      rss_start=$(rss_kib "$gateway_pid" VmRSS)
      results="$work/results-$upstream-$n-$mode"
      if [ "$mode" = https ]; then gateway_url="https://127.0.0.1:$gateway_port/mtls/account/t1"; nginx_url="https://127.0.0.1:$proxy_tls_port/"
      else gateway_url="http://127.0.0.1:$gateway_port/mtls/account/t1"; nginx_url="http://127.0.0.1:$proxy_port/"; fi
      echo "== upstream $upstream, $n tenants, $mode listeners"
      warm_up "$mode" "$gateway_url" "$nginx_url" "$n" 2
      warm_handshakes=$(handshakes "$mode")
      for _ in $(seq 1 "$runs"); do
        measure gateway "$gateway_url" "$work/gateway.lua" | tee -a "$results"
        for peer in $peers; do measure "$peer" "$nginx_url" "$work/$peer.lua" | tee -a "$results"; done
      done
      report "$results"
      full=$(metric "$mode" 'mtls_forward_upstream_connections_total{handshake="full"}')
      resumed=$(metric "$mode" 'mtls_forward_upstream_connections_total{handshake="resumed"}')
      echo "gateway: upstream handshakes ${full%.*} full, ${resumed%.*} resumed" \
        "($(($(handshakes "$mode") - warm_handshakes)) during the measured runs); identities loaded" \
        "$(metric "$mode" mtls_forward_identities_loaded); idle connections" \
        "$(metric "$mode" mtls_forward_idle_connections), evicted $(metric "$mode" mtls_forward_idle_evicted_total); RSS $((rss_start / 1024)) MiB at start," \
        "$(($(rss_kib "$gateway_pid" VmRSS) / 1024)) MiB after, peak $(($(rss_kib "$gateway_pid" VmHWM) / 1024)) MiB"
    done
  done
done
echo "(wrk -t$threads -c$connections -d${duration}s with keep-alive; $(nproc) cores shared by wrk, nginx and the gateway)"
