#!/bin/sh
# Regenerates the TEST-ONLY keys and certificates in this directory with openssl.
# Never trust any of them: the private keys are public. See README.md.
# The outputs are committed so that tests are deterministic; rerun only to change the set.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Self-signed signing certificates, one per key type, valid for 100 years.
selfsigned() { # name subject serial
    openssl req -x509 -new -key "$1.key" -subj "$2" -set_serial "$3" -days 36500 -sha256 \
        -addext "keyUsage=critical,digitalSignature" -addext "basicConstraints=critical,CA:FALSE" \
        -out "$1.crt"
}

# RSA 2048 in PKCS#8 (and the same key again as PKCS#1 "RSA PRIVATE KEY").
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.key
openssl pkey -in rsa2048.key -traditional -out rsa2048.pkcs1.key
selfsigned rsa2048 "/CN=verity TEST-ONLY RSA 2048" 0x1001

# RSA 4096 as PKCS#1 (and PKCS#8).
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out rsa4096.pkcs8.key
openssl pkey -in rsa4096.pkcs8.key -traditional -out rsa4096.key
selfsigned rsa4096 "/CN=verity TEST-ONLY RSA 4096" 0x1002

# ECDSA P-256 in PKCS#8 (and SEC1 "EC PRIVATE KEY").
openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.key
openssl ec -in p256.key -out p256.sec1.key
selfsigned p256 "/CN=verity TEST-ONLY P-256" 0x1003

# ECDSA P-384 as SEC1 (and PKCS#8).
openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.pkcs8.key
openssl ec -in p384.pkcs8.key -out p384.key
selfsigned p384 "/CN=verity TEST-ONLY P-384" 0x1004

# An untrusted key: no test trust store contains other.crt.
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out other.key
selfsigned other "/CN=verity TEST-ONLY untrusted" 0x1005
# The untrusted key under rsa2048's name and serial: signatures made with it name rsa2048.crt as
# their signer but do not verify with its key ("wrong key").
openssl req -x509 -new -key other.key -subj "/CN=verity TEST-ONLY RSA 2048" -set_serial 0x1001 \
    -days 36500 -sha256 -addext "keyUsage=critical,digitalSignature" -out impostor.crt

# A CA, a leaf it issued, and an expired leaf it issued (valid 2020-2021 only).
openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -new -key ca.key -subj "/CN=verity TEST-ONLY CA" -set_serial 0x2001 -days 36500 \
    -sha256 -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "basicConstraints=critical,CA:TRUE" -out ca.crt
cat > "$tmp/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
database = $tmp/index.txt
new_certs_dir = $tmp
serial = $tmp/serial
default_md = sha256
policy = anything
unique_subject = no
x509_extensions = leaf
[anything]
commonName = supplied
[leaf]
keyUsage = critical,digitalSignature
basicConstraints = critical,CA:FALSE
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
CNF
: > "$tmp/index.txt"
echo 2002 > "$tmp/serial"
issue() { # name subject ca-options...
    name=$1 subject=$2
    shift 2
    openssl req -new -key "$name.key" -subj "$subject" -out "$tmp/$name.csr"
    openssl ca -batch -notext -config "$tmp/ca.cnf" -cert ca.crt -keyfile ca.key \
        -in "$tmp/$name.csr" -out "$name.crt" "$@" 2>/dev/null
}
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out leaf.key
issue leaf "/CN=verity TEST-ONLY leaf" -days 36500
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out expired.key
issue expired "/CN=verity TEST-ONLY expired" -startdate 20200101000000Z -enddate 20210101000000Z
