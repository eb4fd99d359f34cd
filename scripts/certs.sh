#!/usr/bin/env bash
# Makes a private CA and certificates for Spinneret's TLS (openssl):
#   scripts/certs.sh DIR [server:|client:]NAME...
# DIR/ca.pem is every process's --tls_ca; DIR/NAME.pem and DIR/NAME.key are a machine's
# --tls_cert/--tls_key, for the name it is dialled as (a DNS name or an IP address): the host
# engines dial (--worker_hosts, --itemsaver_host, or what a node registers with --advertise),
# and for an engine's admin certificate the host in its --advertise and operators' URLs.
#   scripts/certs.sh pki 127.0.0.1                     everything on one machine, on loopback
#   scripts/certs.sh pki server:r1 s1 w1 w2 e1 e2      Redis r1, itemsaver s1, workers, engines
# (docs/deployment.md walks through both).
# Each certificate says what it is for (its extended key usage):
#   NAME         servers and clients (serverAuth, clientAuth): a machine whose one certificate
#                serves both, such as a worker or itemsaver that also shows it to Redis, or an
#                engine whose certificate also serves its HTTPS admin server
#   server:NAME  servers only (serverAuth): a worker or itemsaver that shows no certificate
#                to Redis; it cannot pass for an engine on another server
#   client:NAME  clients only (clientAuth): an engine without an HTTPS admin server
# Servers with mutual TLS take only client certificates that name clientAuth: certificates
# made by this script before it set a purpose have none, and must be made again.
# Keep DIR/ca.key off the crawl's machines: it signs new certificates.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR [server:|client:]NAME..." >&2; exit 2; }
dir=$1; shift
mkdir -p "$dir"
umask 077
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 "${ec[@]}" -days 825 -subj /CN=spinneret-ca \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
fi
for arg in "$@"; do
  case $arg in
    server:*) name=${arg#server:}; eku=serverAuth ;;
    client:*) name=${arg#client:}; eku=clientAuth ;;
    *) name=$arg; eku=serverAuth,clientAuth ;;
  esac
  [ -n "$name" ] || { echo "$0: $arg names no machine" >&2; exit 2; }
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san="IP:$name"; else san="DNS:$name"; fi
  openssl req "${ec[@]}" -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -out "$dir/$name.pem" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\n' "$san" "$eku") \
    2>/dev/null
  rm -f "$dir/$name.csr"
  echo "$dir/$name.pem, $dir/$name.key ($san, $eku)"
done
chmod 644 "$dir/ca.pem" "$dir"/*.pem
