#!/usr/bin/env bash
# Throughput of the runtime mapping check under wrk: batches of 100 triplets per request
# against one gateway (release build, SQLite + embedded store, its own data directory), with
# MAPPINGS mappings in place. Three runs; the median is reported.
#
#   bench/checks.sh                 (MAPPINGS=10000 DURATION=10 CONNECTIONS=16 THREADS=2)
#
# Needs wrk (Debian: apt-get install wrk), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
mappings="${MAPPINGS:-10000}"
duration="${DURATION:-10}"
connections="${CONNECTIONS:-16}"
threads="${THREADS:-2}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --bin mtls-gateway -q
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MTLS_GATEWAY__DATA_DIR="$work/data" MTLS_GATEWAY__SERVER__LISTEN="127.0.0.1:$port" MTLS_GATEWAY__LOG__LEVEL=warn
bin=target/release/mtls-gateway
"$bin" serve >"$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
account=bench1
token=$("$bin" token issue --account "$account" --privileges MTLS_READ_INTERNAL,MTLS_WRITE_INTERNAL --ttl 2h)

# One certificate, then the mappings in batches of 1000 (SPEC caps nothing here; the body limit does).
[ -f target/test-fixtures/p12/openssl-default-p256.p12 ] || cargo test -q -p mtls-pki --test intake every_source >/dev/null
p12=$(base64 -w0 target/test-fixtures/p12/openssl-default-p256.p12)
certificate=$(curl -fs -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "[{\"name\":\"bench\",\"p12\":\"$p12\",\"password\":\"fixture-secret\"}]" \
  "http://127.0.0.1:$port/mtls/account/$account/certificates" | python3 -c 'import json,sys; print(json.load(sys.stdin)["successfulySavedCertificates"][0]["id"])')
python3 - "$port" "$account" "$token" "$certificate" "$mappings" <<'PY'
import json, sys, urllib.request
port, account, token, certificate, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
for start in range(0, count, 1000):
    batch = [{"name": f"m{i}", "certificationId": certificate, "serviceId": "1",
              "url": f"https://tenant-{i}.example.com/oauth/token", "siteId": account}
             for i in range(start, min(count, start + 1000))]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/account/{account}/configuration/ac-common/mtls?v=3.0",
        data=json.dumps(batch).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
PY

# 100 triplets per request: 75 that exist, 25 that do not.
body=$(python3 -c "
import json
items = [{'serviceName': 'IDP', 'url': f'https://tenant-{(i * 97) % $mappings}.example.com/oauth/token' + ('' if i % 4 else '/miss')} for i in range(100)]
print(json.dumps(items))")
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [=[$body]=]
LUA
url="http://127.0.0.1:$port/api/account/$account/checks/serviceUrlMappings"
check=$(curl -fs -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$body" "$url" \
  | python3 -c 'import json,sys; a=json.load(sys.stdin); print(sum(x["exist"] for x in a))')
echo "sanity: $check of 100 triplets exist (expected 75)"

results=()
for run in 1 2 3; do
  out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "$url")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "run $run: $rps requests/s, p50 $p50, p99 $p99${non2xx:+, NON-2XX $non2xx}"
  results+=("$rps")
done
median=$(printf '%s\n' "${results[@]}" | sort -n | sed -n 2p)
echo "median: $median requests/s = $(python3 -c "print(round($median * 100))") triplet checks/s" \
  "($mappings mappings, batches of 100, wrk -t$threads -c$connections -d${duration}s, $(nproc) cores shared by wrk and the gateway)"
