#!/usr/bin/env bash
# Regenerates the TEST-ONLY certificates and keys in this folder (see README.md).
# Requires the `openssl` command-line tool (written for OpenSSL 3.0).
# Usage: src/testkit/certs/generate.sh   (writes next to this script)
#
# Every certificate is issued with `openssl ca` so that validity dates are fixed
# (OpenSSL 3.0's `openssl x509` cannot set a start date): valid certificates run
# from 2020-01-01 to 2120-01-01, the expired one from 2000-01-01 to 2001-01-01.
set -euo pipefail

cd "$(dirname "$0")"
START=20200101000000Z
END=21200101000000Z
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

mkdir -p "$TMP/db/newcerts"
touch "$TMP/db/index.txt"
cat > "$TMP/ca.cnf" <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = $TMP/db
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
email_in_dn = no
[ any ]
commonName = supplied
organizationName = optional
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ v3_server ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
[ v3_wrong_san ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = DNS:example.com
[ v3_client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
CNF

# issue NAME SUBJECT EXTENSIONS SIGNER START END
#   writes NAME.key (PKCS#8) and NAME.pem; SIGNER "self" makes a self-signed CA.
issue() {
  local name=$1 subject=$2 ext=$3 signer=$4 start=$5 end=$6
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "$subject" \
    -keyout "$name.key" -out "$TMP/$name.csr" 2>/dev/null
  openssl rand -hex 16 > "$TMP/db/serial"
  if [ "$signer" = self ]; then
    openssl ca -batch -config "$TMP/ca.cnf" -selfsign -keyfile "$name.key" \
      -extensions "$ext" -notext -startdate "$start" -enddate "$end" \
      -in "$TMP/$name.csr" -out "$name.pem" 2>/dev/null
  else
    openssl ca -batch -config "$TMP/ca.cnf" -cert "$signer.pem" -keyfile "$signer.key" \
      -extensions "$ext" -notext -startdate "$start" -enddate "$end" \
      -in "$TMP/$name.csr" -out "$name.pem" 2>/dev/null
  fi
}

# The test CA, and an unrelated CA (for "a wrong CA is refused").
issue ca "/CN=kuberesolver test CA" v3_ca self "$START" "$END"
issue other-ca "/CN=kuberesolver unrelated test CA" v3_ca self "$START" "$END"

# The API server: valid for 127.0.0.1, ::1 and localhost.
issue server "/CN=kube-apiserver" v3_server ca "$START" "$END"
# Signed by the test CA but only valid for example.com.
issue wrong-san "/CN=example.com" v3_wrong_san ca "$START" "$END"
# Signed by the test CA, right names, validity entirely in the past.
issue expired "/CN=kube-apiserver expired" v3_server ca 20000101000000Z 20010101000000Z

# All certificates of a PEM bundle must be trusted: the unrelated CA first.
cat other-ca.pem ca.pem > bundle.pem

# Client certificates (kubeconfig client-certificate / client-key).
issue client-ca "/CN=kuberesolver test client CA" v3_ca self "$START" "$END"
issue client "/O=system:masters/CN=kuberesolver-test-client" v3_client client-ca "$START" "$END"

# Nothing else is ever signed by these two.
rm -f other-ca.key client-ca.key
chmod 644 ./*.pem ./*.key

# Self-check.
openssl verify -CAfile ca.pem server.pem wrong-san.pem
openssl verify -CAfile client-ca.pem client.pem
if openssl verify -CAfile ca.pem expired.pem >/dev/null 2>&1; then
  echo "expired.pem unexpectedly verifies" >&2
  exit 1
fi
echo "certificates written to $(pwd)"
