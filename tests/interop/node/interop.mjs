// oauth4webapi and jose against Latchkey. Prints `RESULT library case PASS|FAIL|SKIP detail`.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';

const require = createRequire(import.meta.url);
const version = (name) => require(`${name}/package.json`).version;
const OAUTH = `oauth4webapi-${version('oauth4webapi')}`;
const JOSE = `jose-${version('jose')}`;
const ISSUERS = Object.fromEntries(process.env.INTEROP_ISSUERS.split(',').map((p) => p.split(/=(.*)/s).slice(0, 2)));
const CLIENTS = JSON.parse(process.env.INTEROP_CLIENTS);

async function result(lib, name, fn) {
  try {
    await fn();
    console.log(`RESULT ${lib} ${name} PASS`);
  } catch (e) {
    console.log(`RESULT ${lib} ${name} FAIL ${String(e && (e.stack || e)).replace(/\s+/g, ' ').slice(0, 200)}`);
  }
}

// RFC 8414 discovery from the issuer identifier: oauth4webapi builds the §3.1 URL and checks
// that the document's issuer is the one asked for.
const servers = {};
await result(OAUTH, 'discovery', async () => {
  for (const [alg, issuer] of Object.entries(ISSUERS)) {
    const url = new URL(issuer);
    const res = await oauth.discoveryRequest(url, { algorithm: 'oauth2' });
    servers[alg] = await oauth.processDiscoveryResponse(url, res);
  }
});
if (!servers.RS256) process.exit(0);
const as = servers.RS256;

async function token(server, c, method, scope) {
  const client = { client_id: c.id };
  const auth = method === 'basic' ? oauth.ClientSecretBasic(c.secret) : oauth.ClientSecretPost(c.secret);
  const params = new URLSearchParams();
  if (scope) params.set('scope', scope);
  const res = await oauth.clientCredentialsGrantRequest(server, client, auth, params);
  return oauth.processClientCredentialsResponse(server, client, res);
}

async function expectError(code, fn) {
  try {
    await fn();
  } catch (e) {
    if (e instanceof oauth.ResponseBodyError && e.error === code) return;
    // A Basic attempt gets 401 with its challenge (RFC 6749 §5.2): oauth4webapi raises the
    // challenge and keeps the response, whose body still names the error.
    if (e instanceof oauth.WWWAuthenticateChallengeError && e.cause[0]?.scheme === 'basic') {
      const body = await e.response.json();
      if (body.error === code) return;
    }
    throw new Error(`wanted ${code}, got ${e}`);
  }
  throw new Error(`no error, wanted ${code}`);
}

for (const [name, method] of [['token_basic', 'basic'], ['token_post', 'post']]) {
  await result(OAUTH, name, async () => {
    for (const c of CLIENTS) {
      const t = await token(as, c, method);
      if (t.token_type.toLowerCase() !== 'bearer' || !t.access_token) throw new Error(JSON.stringify(t));
    }
  });
}

await result(OAUTH, 'errors', async () => {
  const bad = { ...CLIENTS[0], secret: 'wrong' };
  await expectError('invalid_client', () => token(as, bad, 'basic'));
  await expectError('invalid_client', () => token(as, bad, 'post'));
  await expectError('invalid_scope', () => token(as, CLIENTS[0], 'post', 'orders:write'));
});

// Issue 13: RFC 7591 registration with oauth4webapi's own DCR client, at the endpoint the
// metadata names; the registered credentials then get a token.
await result(OAUTH, 'registration', async () => {
  if (!as.registration_endpoint) throw new Error('no registration_endpoint in the metadata');
  const res = await oauth.dynamicClientRegistrationRequest(as, {
    client_name: 'oauth4webapi interop',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_post',
    scope: 'orders:read',
  });
  const client = await oauth.processDynamicClientRegistrationResponse(res);
  if (!client.client_id || !client.client_secret || !client.registration_access_token) throw new Error(JSON.stringify(Object.keys(client)));
  const t = await token(as, { id: client.client_id, secret: client.client_secret }, 'post', 'orders:read');
  if (t.scope !== 'orders:read') throw new Error(JSON.stringify(t));
  // Bad metadata is refused with RFC 7591's error code.
  const bad = await oauth.dynamicClientRegistrationRequest(as, { grant_types: ['implicit'] });
  await expectError('invalid_client_metadata', () => oauth.processDynamicClientRegistrationResponse(bad));
});

// jose's remote JWK Set, with a cooldown matching the server's 1 s cache period.
const jwks = Object.fromEntries(
  Object.entries(servers).map(([alg, s]) => [alg, jose.createRemoteJWKSet(new URL(s.jwks_uri), { cooldownDuration: 1000 })]),
);
async function verify(alg, jwt) {
  const { payload } = await jose.jwtVerify(jwt, jwks[alg], { issuer: ISSUERS[alg], algorithms: [alg] });
  if (payload.clientId !== CLIENTS[0].id) throw new Error(JSON.stringify(payload));
}
for (const alg of Object.keys(ISSUERS)) {
  await result(JOSE, `verify_${alg}`, async () => verify(alg, (await token(servers[alg], CLIENTS[0], 'post')).access_token));
}

await result(JOSE, 'rotation', async () => {
  const before = (await token(servers.ES256, CLIENTS[0], 'post')).access_token;
  await verify('ES256', before);
  execFileSync(process.env.INTEROP_ROTATE, { stdio: 'inherit' });
  const after = (await token(servers.ES256, CLIENTS[0], 'post')).access_token;
  if (jose.decodeProtectedHeader(after).kid === jose.decodeProtectedHeader(before).kid) throw new Error('same kid');
  await new Promise((r) => setTimeout(r, 1100)); // past the cooldown of the last fetch
  await verify('ES256', after);
  await verify('ES256', before);
});
