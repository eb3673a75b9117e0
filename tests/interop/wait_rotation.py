"""Wait until the ES256 server signs with a key other than the one it signed with before:
`latchkey keys rotate` publishes the next key first and lets it sign two cache periods later."""
import base64, json, os, ssl, sys, time, urllib.parse, urllib.request

issuers = dict(p.split("=", 1) for p in os.environ["INTEROP_ISSUERS"].split(","))
base = issuers["ES256"].rsplit("/token", 1)[0]
client = json.loads(os.environ["INTEROP_CLIENTS"])[-1]
ctx = ssl.create_default_context(cafile=os.environ["INTEROP_CA"])


def kid():
    body = urllib.parse.urlencode({"grant_type": "client_credentials",
                                   "client_id": client["id"], "client_secret": client["secret"]})
    req = urllib.request.Request(base + "/oauth2/token", data=body.encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    token = json.load(urllib.request.urlopen(req, context=ctx))["access_token"]
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


# The rotation was just asked for: the key signing now is still the old one.
active = kid()
deadline = time.time() + 30
while time.time() < deadline:
    if kid() != active:
        sys.exit(0)
    time.sleep(0.3)
sys.exit("the new key never signed")
