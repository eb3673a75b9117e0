"""authlib and PyJWT against Latchkey. Prints `RESULT library case PASS|FAIL detail`."""
import json
import os
import ssl
import subprocess

import authlib
import jwt
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata, get_well_known_url

CA = os.environ["INTEROP_CA"]
ISSUERS = dict(p.split("=", 1) for p in os.environ["INTEROP_ISSUERS"].split(","))
CLIENTS = json.loads(os.environ["INTEROP_CLIENTS"])
OAUTH = f"authlib-{authlib.__version__}"
JWT = f"pyjwt-{jwt.__version__}"


class Skip(Exception):
    """A case the library cannot do by its own design; the reason goes in the table."""


def result(lib, case, fn):
    try:
        fn()
        print(f"RESULT {lib} {case} PASS", flush=True)
    except Skip as e:
        print(f"RESULT {lib} {case} SKIP {e}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is a row in the table
        detail = f"{type(e).__name__}: {e}".replace("\n", " ")[:200]
        print(f"RESULT {lib} {case} FAIL {detail}", flush=True)


def discover(issuer):
    """RFC 8414 §3: the well-known URL from the issuer identifier, the document validated,
    and its issuer identical to the one asked for (§3.3)."""
    url = get_well_known_url(issuer, external=True)
    doc = requests.get(url, verify=CA, timeout=10).json()
    metadata = AuthorizationServerMetadata(doc)
    metadata.validate()
    if metadata["issuer"] != issuer:
        raise AssertionError(f"issuer {metadata['issuer']} != {issuer}")
    return metadata


def token(metadata, client, method, **extra):
    session = OAuth2Session(
        client_id=client["id"],
        client_secret=client["secret"],
        token_endpoint_auth_method=method,
    )
    return session.fetch_token(
        metadata["token_endpoint"], grant_type="client_credentials", verify=CA, **extra
    )


def expect_error(code, fn):
    try:
        fn()
    except OAuthError as e:
        if e.error != code:
            raise AssertionError(f"error {e.error!r}, wanted {code!r}") from e
        return
    raise AssertionError(f"no error, wanted {code}")


ctx = ssl.create_default_context(cafile=CA)
meta = {}


def discovery():
    for alg, issuer in ISSUERS.items():
        meta[alg] = discover(issuer)


result(OAUTH, "discovery", discovery)
if not meta:
    raise SystemExit(0)
rs = meta["RS256"]


def basic():
    plain = CLIENTS[-1]
    t = token(rs, plain, "client_secret_basic")
    assert t["token_type"] == "Bearer" and t["access_token"], t
    # RFC 6749 §2.3.1 form-encodes id and secret inside Basic; a library that does not can
    # never send an id with ':' unambiguously.
    from authlib.oauth2.auth import encode_client_secret_basic

    class C:
        client_id, client_secret = "a b", "c"

    _, h, _ = encode_client_secret_basic(C, "POST", "", {}, "")
    if h["Authorization"] == "Basic YSBiOmM=":
        raise Skip("awkward ids: authlib sends Basic without RFC 6749 2.3.1 form-encoding (plain id passed)")
    for c in CLIENTS:
        t = token(rs, c, "client_secret_basic")
        assert t["token_type"] == "Bearer" and t["access_token"], t


def post():
    for c in CLIENTS:
        t = token(rs, c, "client_secret_post")
        assert t["token_type"] == "Bearer" and t["access_token"], t


def errors():
    bad = dict(CLIENTS[-1], secret="wrong")
    expect_error("invalid_client", lambda: token(rs, bad, "client_secret_basic"))
    expect_error("invalid_client", lambda: token(rs, bad, "client_secret_post"))
    expect_error(
        "invalid_scope",
        lambda: token(rs, CLIENTS[0], "client_secret_post", scope="orders:write"),
    )


def introspect_revoke():
    """Issue 13: RFC 7662 introspection and RFC 7009 revocation through authlib's client,
    at the endpoints the metadata names."""
    plain = CLIENTS[-1]
    s = OAuth2Session(
        client_id=plain["id"],
        client_secret=plain["secret"],
        token_endpoint_auth_method="client_secret_basic",
    )
    t = s.fetch_token(rs["token_endpoint"], grant_type="client_credentials", verify=CA)
    r = s.introspect_token(rs["introspection_endpoint"], token=t["access_token"], verify=CA)
    body = r.json()
    assert r.status_code == 200 and body["active"] is True, body
    assert body["client_id"] == plain["id"] and body["scope"] == t["scope"], body
    r = s.revoke_token(
        rs["revocation_endpoint"],
        token=t["access_token"],
        token_type_hint="access_token",
        verify=CA,
    )
    assert r.status_code == 200, r.text
    r = s.introspect_token(rs["introspection_endpoint"], token=t["access_token"], verify=CA)
    assert r.json() == {"active": False}, r.text


result(OAUTH, "token_basic", basic)
result(OAUTH, "token_post", post)
result(OAUTH, "errors", errors)
result(OAUTH, "introspect_revoke", introspect_revoke)

jwks_clients = {
    alg: jwt.PyJWKClient(m["jwks_uri"], ssl_context=ctx, lifespan=1)
    for alg, m in meta.items()
}


def verify(alg, access_token):
    key = jwks_clients[alg].get_signing_key_from_jwt(access_token)
    claims = jwt.decode(
        access_token,
        key.key,
        algorithms=[alg],
        issuer=ISSUERS[alg],
        options={"require": ["exp", "iat", "iss", "sub"]},
    )
    assert claims["clientId"] == CLIENTS[0]["id"], claims


for alg in ISSUERS:
    result(
        JWT,
        f"verify_{alg}",
        lambda alg=alg: verify(alg, token(meta[alg], CLIENTS[0], "client_secret_post")["access_token"]),
    )


def rotation():
    before = token(meta["ES256"], CLIENTS[0], "client_secret_post")["access_token"]
    verify("ES256", before)
    subprocess.run([os.environ["INTEROP_ROTATE"]], check=True)
    after = token(meta["ES256"], CLIENTS[0], "client_secret_post")["access_token"]
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    verify("ES256", after)
    verify("ES256", before)


result(JWT, "rotation", rotation)
