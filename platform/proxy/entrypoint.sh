#!/bin/sh
# Use the certificate in /etc/m2d/tls (cert.pem + key.pem, PEM, full chain first) when there is
# one; otherwise make a self-signed one for M2D_PUBLIC_HOST so the platform starts on HTTPS at
# once. Replace it with the hospital's certificate and restart the proxy (docs/operations.md).
set -eu
: "${M2D_PUBLIC_HOST:?set M2D_PUBLIC_HOST}"
export M2D_PUBLIC_HOST
export M2D_MLFLOW_HTTPS_PORT="${M2D_MLFLOW_HTTPS_PORT:-8443}"
export M2D_HTTPS_PORT="${M2D_HTTPS_PORT:-443}"
export M2D_PROXY_MAX_BODY="${M2D_PROXY_MAX_BODY:-110m}"
export MLFLOW_ADMIN_USERNAME="${MLFLOW_ADMIN_USERNAME:-m2d-admin}"
tls=/etc/m2d/tls
if [ ! -s "$tls/cert.pem" ] || [ ! -s "$tls/key.pem" ]; then
    echo "m2d-proxy: no certificate in $tls; making a self-signed one for $M2D_PUBLIC_HOST"
    case "$M2D_PUBLIC_HOST" in
        *[!0-9.]*) san="DNS:$M2D_PUBLIC_HOST,DNS:localhost,IP:127.0.0.1" ;;
        *) san="IP:$M2D_PUBLIC_HOST,DNS:localhost,IP:127.0.0.1" ;;
    esac
    umask 077
    openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 825 \
        -keyout "$tls/key.pem" -out "$tls/cert.pem" \
        -subj "/CN=$M2D_PUBLIC_HOST/O=M2D self-signed" -addext "subjectAltName=$san" 2>/dev/null
    chmod 644 "$tls/cert.pem"
fi
envsubst '$M2D_PUBLIC_HOST $M2D_MLFLOW_HTTPS_PORT $M2D_HTTPS_PORT $M2D_PROXY_MAX_BODY $MLFLOW_ADMIN_USERNAME' \
    < /etc/m2d/nginx.conf.template > /etc/nginx/conf.d/m2d.conf
nginx -t -q
exec nginx -g 'daemon off;'
