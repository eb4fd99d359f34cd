#!/usr/bin/env bash
# Makes a private CA and one certificate per machine name for Spinneret's TLS (openssl):
#   scripts/certs.sh DIR NAME...
# DIR/ca.pem is every process's --tls_ca; DIR/NAME.pem and DIR/NAME.key are the
# --tls_cert/--tls_key of the machine engines dial as NAME (a DNS name or an IP address).
# Keep DIR/ca.key off the crawl's machines: it signs new certificates.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR NAME..." >&2; exit 2; }
dir=$1; shift
mkdir -p "$dir"
umask 077
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 "${ec[@]}" -days 825 -subj /CN=spinneret-ca \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
fi
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san="IP:$name"; else san="DNS:$name"; fi
  openssl req "${ec[@]}" -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -extfile <(printf 'subjectAltName=%s\n' "$san") -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr"
  echo "$dir/$name.pem, $dir/$name.key ($san)"
done
chmod 644 "$dir/ca.pem" "$dir"/*.pem
