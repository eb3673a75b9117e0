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


# Issue 11: private_key_jwt (RFC 7523 §2.2) with authlib's own PrivateKeyJWT client auth.
def private_key_jwt_session(expires_in):
    from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign

    class ShortLived(PrivateKeyJWT):
        """authlib signs assertions valid for 1 h by default; Latchkey accepts at most 5 min
        (--assertion-max-lifetime), so this passes authlib's own expires_in."""

        def sign(self, auth, token_endpoint):
            return private_key_jwt_sign(
                auth.client_secret,
                client_id=auth.client_id,
                token_endpoint=token_endpoint,
                alg=self.alg,
                expires_in=expires_in,
            )

    with open(os.environ["INTEROP_PKJWT_KEY"]) as f:
        key = f.read()
    endpoint = rs["token_endpoint"]
    session = OAuth2Session(
        client_id=os.environ["INTEROP_PKJWT_ID"],
        client_secret=key,
        token_endpoint_auth_method="private_key_jwt",
    )
    if expires_in is None:
        session.register_client_auth_method(PrivateKeyJWT(endpoint))
    else:
        session.register_client_auth_method(ShortLived(endpoint))
    return session, endpoint


def private_key_jwt():
    session, endpoint = private_key_jwt_session(120)
    if "private_key_jwt" not in rs["token_endpoint_auth_methods_supported"]:
        raise AssertionError("metadata does not list private_key_jwt")
    for _ in range(2):  # each assertion has its own jti
        t = session.fetch_token(endpoint, grant_type="client_credentials", verify=CA)
        assert t["token_type"] == "Bearer" and t["access_token"], t
        key = jwks_clients["RS256"].get_signing_key_from_jwt(t["access_token"])
        claims = jwt.decode(
            t["access_token"], key.key, algorithms=["RS256"], issuer=ISSUERS["RS256"]
        )
        assert claims["sub"] == claims["clientId"] == os.environ["INTEROP_PKJWT_ID"], claims


def private_key_jwt_default_lifetime():
    # authlib's default assertion lifetime (1 h) is longer than Latchkey allows: refused.
    session, endpoint = private_key_jwt_session(None)
    expect_error(
        "invalid_client",
        lambda: session.fetch_token(endpoint, grant_type="client_credentials", verify=CA),
    )


result(OAUTH, "private_key_jwt", private_key_jwt)
result(OAUTH, "private_key_jwt_1h_refused", private_key_jwt_default_lifetime)
