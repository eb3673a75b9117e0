// Issue 12: panva's openid-client, an OpenID Connect relying party, completes the code flow
// against Latchkey. openid-client has no browser, so this script plays one with fetch: it
// follows the authorization URL openid-client builds (PKCE S256, state, nonce), fills in the
// login page (its CSRF token and cookie), allows the consent page, and hands the redirect it
// is sent to back to openid-client, which checks iss (RFC 9207), state, nonce and the
// id_token's signature through the discovered JWKS. Then refreshes, reuse detection and
// UserInfo; once for a confidential client (client_secret_basic) and once for a public one
// (none). Prints `RESULT library case PASS|FAIL detail`.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import * as client from 'openid-client';

const require = createRequire(import.meta.url);
const LIB = `openid-client-${require('openid-client/package.json').version}`;
const ISSUERS = Object.fromEntries(process.env.INTEROP_ISSUERS.split(',').map((p) => p.split(/=(.*)/s).slice(0, 2)));
const OIDC = JSON.parse(process.env.INTEROP_OIDC);
// The sample user APK's non-production IdP has, served without --users.
const USER = { username: 'admin', password: 'admin', organization: 'org1' };

async function result(name, fn) {
  try {
    await fn();
    console.log(`RESULT ${LIB} ${name} PASS`);
  } catch (e) {
    console.log(`RESULT ${LIB} ${name} FAIL ${String(e && (e.stack || e)).replace(/\s+/g, ' ').slice(0, 300)}`);
  }
}

function check(ok, what) {
  if (!ok) throw new Error(what);
}

/** A browser's cookies for one origin, kept by hand (fetch keeps none). */
class Browser {
  constructor() {
    this.cookies = new Map();
  }

  keep(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at);
      const value = pair.slice(at + 1);
      check(/;\s*Secure/i.test(line) && /;\s*HttpOnly/i.test(line) && /;\s*SameSite=Lax/i.test(line), `cookie attributes: ${line}`);
      if (value) this.cookies.set(name, value);
      else this.cookies.delete(name);
    }
  }

  headers() {
    const cookie = [...this.cookies].map(([n, v]) => `${n}=${v}`).join('; ');
    return cookie ? { cookie } : {};
  }

  async get(url) {
    const res = await fetch(url, { redirect: 'manual', headers: this.headers() });
    this.keep(res);
    return res;
  }

  async post(url, form) {
    const res = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      headers: { ...this.headers(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
    });
    this.keep(res);
    return res;
  }
}

function csrfOf(html) {
  const m = html.match(/name="csrf" value="([^"]+)"/);
  check(m, `no CSRF token in the page: ${html.slice(0, 200)}`);
  return m[1];
}

/**
 * Follow `authorizationUrl` as a person would: the login page (when there is no session),
 * then the consent page (unless the client is first-party). Returns the URL Latchkey sends the
 * browser back to.
 */
async function signIn(browser, authorizationUrl) {
  let res = await browser.get(authorizationUrl);
  if (res.status === 302) return new URL(res.headers.get('location'));
  check(res.status === 200, `authorize: ${res.status}`);
  let html = await res.text();
  if (html.includes('name="password"')) {
    const login = new URL('/oauth2/login', authorizationUrl);
    res = await browser.post(login, { csrf: csrfOf(html), username: USER.username, password: USER.password });
    if (res.status === 302) return new URL(res.headers.get('location'));
    check(res.status === 200, `login: ${res.status}`);
    html = await res.text();
  }
  check(html.includes('value="allow"'), `no consent page: ${html.slice(0, 200)}`);
  res = await browser.post(new URL('/oauth2/consent', authorizationUrl), { csrf: csrfOf(html), decision: 'allow' });
  check(res.status === 302, `consent: ${res.status}`);
  return new URL(res.headers.get('location'));
}

/** RFC 6749 error a library call must surface. */
async function expectOAuthError(code, fn) {
  try {
    await fn();
  } catch (e) {
    if (e instanceof client.ResponseBodyError && e.error === code) return e;
    if (e instanceof client.AuthorizationResponseError && e.error === code) return e;
    throw new Error(`wanted ${code}, got ${e && e.name}: ${e && e.message}`);
  }
  throw new Error(`no error, wanted ${code}`);
}

/** A call openid-client must refuse (it throws), for the reason `what`. */
async function expectRefusal(what, fn) {
  try {
    await fn();
  } catch {
    return;
  }
  throw new Error(`${what} was accepted`);
}

/** OpenID Connect Core §3.1.3.6: at_hash is the left half of SHA-256(access_token), base64url. */
function atHash(accessToken) {
  const digest = createHash('sha256').update(accessToken).digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

const issuer = new URL(ISSUERS.RS256);
const redirect_uri = OIDC.redirect_uri;

async function configure(c) {
  const auth = c.secret ? client.ClientSecretBasic(c.secret) : client.None();
  // Discovery from the issuer identifier (OpenID Connect Discovery: the issuer's path, then
  // /.well-known/openid-configuration; the document's issuer must be the one asked for).
  const config = await client.discovery(issuer, c.id, { redirect_uris: [redirect_uri] }, auth);
  // Verify the id_token's JWS signature through the JWKS, not only the TLS channel.
  client.enableNonRepudiationChecks(config);
  return config;
}

const configs = {};
await result('oidc_discovery', async () => {
  for (const [kind, c] of Object.entries(OIDC.clients)) configs[kind] = await configure(c);
  const meta = configs.basic.serverMetadata();
  check(meta.issuer === ISSUERS.RS256, `issuer ${meta.issuer}`);
  check(meta.authorization_response_iss_parameter_supported === true, 'RFC 9207 iss not advertised');
  check(meta.token_endpoint_auth_methods_supported.includes('none'), 'none not advertised');
  check(meta.code_challenge_methods_supported.includes('S256'), 'S256 not advertised');
});

for (const [kind, c] of Object.entries(OIDC.clients)) {
  const config = configs[kind];
  if (!config) continue;
  const browser = new Browser();
  let tokens;
  let sub;

  await result(`code_flow_${kind}`, async () => {
    const pkceCodeVerifier = client.randomPKCECodeVerifier();
    const expectedState = client.randomState();
    const expectedNonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri,
      scope: 'openid orders:read',
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state: expectedState,
      nonce: expectedNonce,
    });
    const back = await signIn(browser, url);
    check(back.href.startsWith(redirect_uri), `sent back to ${back.href}`);
    check(back.searchParams.get('iss') === ISSUERS.RS256, `iss ${back.searchParams.get('iss')}`);
    // What openid-client checks before it spends the code: another issuer's iss (RFC 9207,
    // a mix-up) and another state are refused.
    const mixedUp = new URL(back);
    mixedUp.searchParams.set('iss', 'https://evil.example/token');
    await expectRefusal('a foreign iss', () => client.authorizationCodeGrant(config, mixedUp, { pkceCodeVerifier, expectedState, expectedNonce }));
    await expectRefusal('another state', () =>
      client.authorizationCodeGrant(config, back, { pkceCodeVerifier, expectedState: client.randomState(), expectedNonce }),
    );
    tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier, expectedState, expectedNonce, idTokenExpected: true });
    const claims = tokens.claims();
    check(claims.nonce === expectedNonce, 'nonce');
    check(claims.aud === c.id && claims.azp === c.id, `aud ${claims.aud} azp ${claims.azp}`);
    check(claims.at_hash === atHash(tokens.access_token), 'at_hash');
    check(typeof claims.auth_time === 'number' && claims.auth_time <= claims.iat, 'auth_time');
    check(tokens.scope === 'openid orders:read', `scope ${tokens.scope}`);
    check(typeof tokens.refresh_token === 'string', 'no refresh token');
    sub = claims.sub;
    // The code is single use: openid-client surfaces invalid_grant for it the second time.
    await expectOAuthError('invalid_grant', () =>
      client.authorizationCodeGrant(config, back, { pkceCodeVerifier, expectedState, expectedNonce }),
    );
  });

  await result(`userinfo_${kind}`, async () => {
    check(tokens, 'no tokens from the code flow');
    // A fresh sign-in (the session cookie skips the password): the replayed code above
    // revoked the first one.
    const pkceCodeVerifier = client.randomPKCECodeVerifier();
    const expectedState = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri,
      scope: 'openid orders:read',
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state: expectedState,
    });
    const back = await signIn(browser, url);
    tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier, expectedState, idTokenExpected: true });
    check(tokens.claims().sub === sub, 'the same person, the same sub');
    const info = await client.fetchUserInfo(config, tokens.access_token, sub);
    check(info.preferred_username === USER.username, `preferred_username ${info.preferred_username}`);
    check(info.organization === USER.organization, `organization ${info.organization}`);
    // The wrong subject expected: openid-client refuses the response.
    let refused = false;
    try {
      await client.fetchUserInfo(config, tokens.access_token, 'someone-else');
    } catch {
      refused = true;
    }
    check(refused, 'a UserInfo response for another subject was accepted');
  });

  await result(`refresh_reuse_${kind}`, async () => {
    check(tokens, 'no tokens from the code flow');
    const first = tokens.refresh_token;
    const refreshed = await client.refreshTokenGrant(config, first);
    check(refreshed.refresh_token && refreshed.refresh_token !== first, 'the refresh token was not rotated');
    check(refreshed.claims().sub === sub, 'refreshed id_token sub');
    const again = await client.refreshTokenGrant(config, refreshed.refresh_token);
    // The rotated (old) token presented again: invalid_grant, and the family is revoked, so
    // the newest token is refused too.
    await expectOAuthError('invalid_grant', () => client.refreshTokenGrant(config, first));
    await expectOAuthError('invalid_grant', () => client.refreshTokenGrant(config, again.refresh_token));
  });
}

// The id_token's signature is checked through the JWKS: the same response with one bit of
// the signature changed on the way (a fetch that tampers with the token response) is refused.
await result('id_token_signature', async () => {
  const config = configs.basic;
  check(config, 'no configuration');
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const expectedState = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri,
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    state: expectedState,
  });
  const back = await signIn(new Browser(), url);
  let tampered = false;
  config[client.customFetch] = async (input, init) => {
    const res = await fetch(input, init);
    if (!String(input).endsWith('/oauth2/token')) return res;
    const body = await res.json();
    const [h, p, sig] = body.id_token.split('.');
    const bytes = Buffer.from(sig, 'base64url');
    bytes[0] ^= 1;
    body.id_token = `${h}.${p}.${bytes.toString('base64url')}`;
    tampered = true;
    return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
  };
  try {
    await expectRefusal('a forged id_token signature', () =>
      client.authorizationCodeGrant(config, back, { pkceCodeVerifier, expectedState, idTokenExpected: true }),
    );
  } finally {
    delete config[client.customFetch];
  }
  check(tampered, 'the token response was not seen');
});

// A public client without PKCE: Latchkey sends the browser back with invalid_request, and
// openid-client surfaces it as the authorization response's error.
await result('pkce_required_none', async () => {
  const config = configs.none;
  check(config, 'no configuration');
  const expectedState = client.randomState();
  const url = client.buildAuthorizationUrl(config, { redirect_uri, scope: 'openid', state: expectedState });
  const back = await signIn(new Browser(), url);
  const e = await expectOAuthError('invalid_request', () => client.authorizationCodeGrant(config, back, { expectedState }));
  check(/PKCE is required/.test(e.error_description || ''), `description ${e.error_description}`);
});
