"""Issue 11 bench fixtures: clients that authenticate by assertion, and a pool of one-use
assertions for each (a jti is accepted once, so every request needs its own).

Usage: assertions.py OUT_DIR COUNT AUDIENCE
Writes OUT_DIR/clients.yaml, OUT_DIR/pkjwt.bodies and OUT_DIR/federated.bodies (one form body
per line): private_key_jwt signed with Ed25519, and an RS256 token of a federated issuer (the
shape and cost of a ServiceAccount token, which the API server signs with RS256).
"""
import json
import sys
import time
import uuid
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

out, count, aud = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ISSUER = "https://ci.bench.example"
SUBJECT = "system:serviceaccount:apps:gateway"

ed = ed25519.Ed25519PrivateKey.generate()
rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ed_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ed.public_key()))
rs_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rs.public_key()))
ed_jwk.update(kid="bench-ed")
rs_jwk.update(kid="bench-rs")

clients = [
    {"apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthClient",
     "metadata": {"name": "bench-pkjwt"},
     "spec": {"clientId": "bench-pkjwt", "jwks": {"keys": [ed_jwk]}}},
    {"apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthClient",
     "metadata": {"name": "bench-federated"},
     "spec": {"clientId": "bench-federated", "federatedIdentities": [
         {"issuer": ISSUER, "subject": SUBJECT, "jwks": {"keys": [rs_jwk]}}]}},
]
with open(f"{out}/clients.yaml", "w") as f:
    f.write("\n---\n".join(json.dumps(c) for c in clients) + "\n")

# The federated (RS256, slow to sign here) pool first: the private_key_jwt ones live 5 min.
now = int(time.time())
with open(f"{out}/federated.bodies", "w") as s:
    for _ in range(count):
        claims = {"iss": ISSUER, "sub": SUBJECT, "aud": aud, "iat": now, "exp": now + 3500,
                  "jti": str(uuid.uuid4())}
        a = jwt.encode(claims, rs, algorithm="RS256", headers={"kid": "bench-rs"})
        s.write(f"grant_type=client_credentials&client_id=bench-federated"
                f"&client_assertion_type={quote(ASSERTION_TYPE)}&client_assertion={a}\n")
now = int(time.time())
with open(f"{out}/pkjwt.bodies", "w") as p:
    for _ in range(count):
        claims = {"iss": "bench-pkjwt", "sub": "bench-pkjwt", "aud": aud, "iat": now,
                  "exp": now + 295, "jti": str(uuid.uuid4())}
        a = jwt.encode(claims, ed, algorithm="EdDSA", headers={"kid": "bench-ed"})
        p.write(f"grant_type=client_credentials&client_assertion_type={quote(ASSERTION_TYPE)}"
                f"&client_assertion={a}\n")
