#!/usr/bin/env bash
# A private CA and a TLS server certificate for the alumon broker (a test rig or a small plant), with openssl.
#
#   deploy/tls/make-certs.sh [-o OUTDIR] [-d DAYS] [-c CLIENT]... HOST...
#
#   HOST     every name or IP address gateways use to reach the broker (e.g. mqtt.plant.example 10.20.0.5);
#            localhost, 127.0.0.1 and `mosquitto` (the compose service name) are always added
#   -o DIR   output directory (default: deploy/pki)
#   -d DAYS  server and client certificate validity (default 825); the CA lives 10 years
#   -c NAME  also issue a client certificate NAME.crt/NAME.key (for `alumon broker config --require-certificate`)
#
# Writes ca.crt (give it to every gateway and service), ca.key (keep it offline), server.crt, server.key.
# An existing CA is reused, so re-issuing the server certificate (a new host name, expiry) keeps every gateway's
# trust. Keys are EC P-256 and mode 0600.
set -euo pipefail

out=$(cd "$(dirname "$0")/.." && pwd)/pki  # deploy/pki, wherever it is run from
days=825
clients=()
while getopts "o:d:c:h" opt; do
  case "$opt" in
    o) out=$OPTARG ;;
    d) days=$OPTARG ;;
    c) clients+=("$OPTARG") ;;
    h) sed -n '2,14p' "$0"; exit 0 ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
command -v openssl >/dev/null || { echo "make-certs.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }

hosts=(localhost 127.0.0.1 mosquitto "$@")
san=""
declare -A seen=()
for h in "${hosts[@]}"; do
  [[ -n "${seen[$h]:-}" ]] && continue
  seen[$h]=1
  if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="${san:+,}IP:$h"; else san+="${san:+,}DNS:$h"; fi
done

umask 077  # private keys are never readable by others, not even for a moment
mkdir -p "$out"
cd "$out"

if [[ ! -f ca.key || ! -f ca.crt ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=alumon broker CA" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  echo "created CA ca.crt (keep ca.key offline)"
fi

issue() {  # name, extendedKeyUsage, extra extensions
  local name=$1 eku=$2 extra=$3
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
    -keyout "$name.key" -out "$name.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=$eku" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" $extra \
    > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chmod 600 "$name.key"
  chmod 644 "$name.crt"
}

issue server serverAuth "subjectAltName=$san"
echo "issued server.crt for $san"
for c in "${clients[@]}"; do
  issue "$c" clientAuth ""
  echo "issued client certificate $c.crt"
done
chmod 644 ca.crt
chmod 600 ca.key
