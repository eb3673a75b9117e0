#!/usr/bin/env bash
# Python: authlib (OAuth client, RFC 8414 metadata) and PyJWT's PyJWKClient (remote JWKS).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=$1/python-venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi
exec "$venv/bin/python" "$here/interop.py"
