#!/usr/bin/env bash
# Self-test of the dev IdP: device flow approve, deny and expiry against a real server.
# Usage: bash dev/idp/check.sh   (needs node, npm, curl; runs npm ci if node_modules is missing)
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"
[ -d node_modules/oidc-provider ] || npm ci --no-audit --no-fund --silent || exit 1

TMP="$(mktemp -d)"
PID=""
PASS=0
FAIL=0
SCOPE="openid email profile groups offline_access"
DEVICE_GRANT="urn:ietf:params:oauth:grant-type:device_code"

stop_server() {
  [ -n "$PID" ] || return 0
  kill "$PID" 2>/dev/null
  for _ in $(seq 1 30); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
  PID=""
}
trap 'stop_server; rm -rf "$TMP"' EXIT

# start_server ARGS... : sets ISS and PID, waits for the "listening on" line.
start_server() {
  : >"$TMP/out"
  node server.mjs --port 0 --interval 1 "$@" >"$TMP/out" 2>>"$TMP/server.err" &
  PID=$!
  for _ in $(seq 1 100); do
    ISS="$(sed -n '1s/^listening on //p' "$TMP/out")"
    [ -n "$ISS" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start:"; cat "$TMP/server.err"; exit 1
}

json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];console.log(v===undefined?"":typeof v==="object"?JSON.stringify(v):v)})' "$1"; }
device_auth() { curl -s -d client_id=gatehouse --data-urlencode "scope=$SCOPE" "$ISS/device/auth"; }
token() { curl -s -d client_id=gatehouse -d "grant_type=$DEVICE_GRANT" -d "device_code=$1" "$ISS/token"; }
# poll DEVICE_CODE: polls /token until it stops answering authorization_pending (max 30 s).
poll() {
  local r
  for _ in $(seq 1 30); do
    r="$(token "$1")"
    [ "$(printf '%s' "$r" | json error)" = authorization_pending ] || { printf '%s' "$r"; return; }
    sleep 1
  done
  printf '%s' "$r"
}
ok() { echo "PASS: $1"; PASS=$((PASS + 1)); }
ko() { echo "FAIL: $1"; FAIL=$((FAIL + 1)); }

# --- 1. approve ---
T0=$(date +%s%N)
start_server
echo "server up in $(( ($(date +%s%N) - T0) / 1000000 )) ms at $ISS"
DA="$(device_auth)"
DC="$(printf '%s' "$DA" | json device_code)"
UC="$(printf '%s' "$DA" | json user_code)"
PENDING="$(token "$DC" | json error)"
if node approve.mjs --issuer "$ISS" --user-code "$UC" --login alice@example.com --password alice-pw; then
  TOK="$(poll "$DC")"
  ID_TOKEN="$(printf '%s' "$TOK" | json id_token)"
  RT="$(printf '%s' "$TOK" | json refresh_token)"
  CLAIMS="$(node -e 'console.log(Buffer.from(process.argv[1].split(".")[1], "base64url").toString())' "$ID_TOKEN" 2>/dev/null)"
  echo "id_token claims: $CLAIMS"
  EMAIL="$(printf '%s' "$CLAIMS" | json email)"
  GROUPS_="$(printf '%s' "$CLAIMS" | json groups)"
  ISS_CLAIM="$(printf '%s' "$CLAIMS" | json iss)"
  if [ "$PENDING" = authorization_pending ] && [ "$EMAIL" = alice@example.com ] \
     && printf '%s' "$GROUPS_" | grep -q '"sre"' && [ "$ISS_CLAIM" = "$ISS" ] && [ -n "$RT" ]; then
    ok "approve: pending before approval, then id_token for alice with groups $GROUPS_ and a refresh_token"
  else
    ko "approve: pending=$PENDING email=$EMAIL groups=$GROUPS_ iss=$ISS_CLAIM refresh_token=${RT:+yes}; token response: $TOK"
  fi
else
  ko "approve: approve.mjs failed"
fi

# --- 2. deny ---
DA="$(device_auth)"
DC="$(printf '%s' "$DA" | json device_code)"
UC="$(printf '%s' "$DA" | json user_code)"
if node approve.mjs --issuer "$ISS" --user-code "$UC" --deny; then
  ERR="$(poll "$DC" | json error)"
  if [ "$ERR" = access_denied ]; then ok "deny: token endpoint says access_denied"; else ko "deny: got error '$ERR'"; fi
else
  ko "deny: approve.mjs --deny failed"
fi
stop_server

# --- 3. expiry ---
start_server --device-code-ttl 2
DC="$(device_auth | json device_code)"
sleep 3
ERR="$(token "$DC" | json error)"
if [ "$ERR" = expired_token ]; then ok "expiry: token endpoint says expired_token"; else ko "expiry: got error '$ERR'"; fi
stop_server

echo "idp check: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
