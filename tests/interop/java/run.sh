#!/usr/bin/env bash
# Java: Nimbus OAuth 2.0 SDK (RFC 8414 metadata, client_credentials, errors) and Nimbus
# JOSE+JWT's JWKSourceBuilder (remote JWKS), from Maven Central at the versions in pom.xml
# (local repository under target/). The test CA goes into a trust store the JVM is given.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1/java
mkdir -p "$dir"
if [ ! -s "$dir/classpath" ] || [ "$here/pom.xml" -nt "$dir/classpath" ]; then
  mvn -q -B -f "$here/pom.xml" -Dmaven.repo.local="$dir/m2" dependency:build-classpath \
    -Dmdep.outputFile="$dir/classpath" >&2
fi
rm -f "$dir/trust.p12"
keytool -importcert -noprompt -alias interop-ca -file "$INTEROP_CA" -keystore "$dir/trust.p12" \
  -storetype PKCS12 -storepass interop >/dev/null 2>&1
exec java -Djavax.net.ssl.trustStore="$dir/trust.p12" -Djavax.net.ssl.trustStorePassword=interop \
  -Djavax.net.ssl.trustStoreType=PKCS12 -cp "$(cat "$dir/classpath")" "$here/Interop.java"
