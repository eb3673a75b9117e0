#!/usr/bin/env bash
# Node: oauth4webapi (RFC 8414 discovery, client_credentials, errors, RFC 7591 registration),
# jose's createRemoteJWKSet, and openid-client (the OpenID Connect code flow, refreshes, reuse
# detection, UserInfo). The test CA is trusted with NODE_EXTRA_CA_CERTS, as a deployment would.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1/node
mkdir -p "$dir"
if ! cmp -s "$here/package.json" "$dir/package.json" || [ ! -d "$dir/node_modules" ]; then
  cp "$here/package.json" "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --silent >&2)
fi
cp "$here/interop.mjs" "$here/openid_client.mjs" "$dir/"
export NODE_EXTRA_CA_CERTS=$INTEROP_CA
status=0
node "$dir/interop.mjs" || status=$?
# Issue 12: openid-client, an OpenID Connect relying party, signs a person in.
node "$dir/openid_client.mjs" || status=$?
exit $status
