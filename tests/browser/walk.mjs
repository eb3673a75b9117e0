// Issue 12: headless Chromium signs a person in through Latchkey, as a person would, and the
// test checks what it gets. The test runs the application's side itself: a loopback http
// server for the redirect URI (RFC 8252 §7.3), PKCE S256, the code exchange, and verification
// of the id_token and access token through the JWKS with jose. Prints one line per step and
// `N passed, N failed`; exits non-zero on a failure. The server and the browser stop when the
// walk ends, whatever happens.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as jose from 'jose';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run tests/browser/run.sh)`);
  return v;
};
const WORK = env('BROWSER_WORK');
const OUT = env('BROWSER_OUT');
const CLIENT_ID = 'browser-app';
// APK's sample user, served when no --users is given.
const USER = { username: 'admin', password: 'admin', organization: 'org1' };
const TIMEOUT_MS = 30_000;

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const sha256 = (text) => createHash('sha256').update(text).digest();

function check(ok, what) {
  if (!ok) throw new Error(what);
}

/** Resolves with `value`, or rejects after `ms` saying what was awaited. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The application's redirect URIs: a loopback http server that records what arrives. */
function startCallbackServer() {
  const arrivals = [];
  const waiters = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    arrivals.push(url);
    for (const w of waiters.splice(0)) w();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!doctype html><title>App</title><p>The app received ${url.pathname}.</p>`);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        base: `http://127.0.0.1:${port}`,
        close: () => new Promise((r) => server.close(r)),
        /** The next arrival at `path` after `since` arrivals. */
        async next(path, since) {
          const find = () => arrivals.slice(since).find((u) => u.pathname === path);
          while (!find()) await within(TIMEOUT_MS, `a request to ${path}`, new Promise((r) => waiters.push(r)));
          return find();
        },
        count: () => arrivals.length,
      });
    });
  });
}

/** `latchkey standalone` over TLS on an ephemeral loopback port; resolves once it listens. */
function startLatchkey(clientsFile, stateDir) {
  const child = spawn(
    env('LATCHKEY_BIN'),
    [
      'standalone',
      '--listen', '127.0.0.1:0',
      '--admin-listen', '127.0.0.1:0',
      '--log-format', 'json',
      '--tls-cert', join(WORK, 'tls.crt'),
      '--tls-key', join(WORK, 'tls.key'),
      '--state-dir', stateDir,
      '--clients', clientsFile,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs = [];
  createInterface({ input: child.stderr }).on('line', (l) => logs.push(`stderr: ${l}`));
  const listening = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      logs.push(line);
      try {
        const v = JSON.parse(line);
        if (v.message === 'listening' && v.listener === 'token') resolve(v.addr);
      } catch {
        // Not a JSON line: kept in the log only.
      }
    });
    child.on('exit', (code) => reject(new Error(`latchkey exited (${code}) before listening:\n${logs.join('\n')}`)));
  });
  return { child, logs, listening: within(60_000, 'latchkey to listen', listening) };
}

/** An https server with a certificate of the same CA that Chromium was not told to trust. */
function startOtherServer() {
  const server = createHttpsServer(
    { cert: readFileSync(join(WORK, 'other.crt')), key: readFileSync(join(WORK, 'other.key')) },
    (_, res) => res.end('should not be reached'),
  );
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({ url: `https://localhost:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

/** Stop the server: SIGTERM, then SIGKILL if it has not exited within 10 s. */
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  try {
    await within(10_000, 'latchkey to exit', exited);
  } catch {
    child.kill('SIGKILL');
    await exited;
  }
}

const results = [];
let failed = false;
async function step(name, fn) {
  if (failed) {
    results.push(['SKIP', name, 'an earlier step failed']);
    return;
  }
  try {
    await fn();
    results.push(['PASS', name, '']);
  } catch (e) {
    failed = true;
    results.push(['FAIL', name, String(e && (e.stack || e)).slice(0, 2000)]);
  }
}

const app = await startCallbackServer();
const other = await startOtherServer();
const redirectUri = `${app.base}/cb`;
const postLogoutUri = `${app.base}/bye`;
const dir = mkdtempSync(join(tmpdir(), 'latchkey-browser-'));
const clientsFile = join(dir, 'clients.yaml');
// A public client (a browser app: no secret, PKCE required) that asks for consent.
writeFileSync(
  clientsFile,
  `apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: browser-app }
spec:
  clientId: ${CLIENT_ID}
  tokenEndpointAuthMethod: none
  grantTypes: [authorization_code, refresh_token]
  scopes: ["orders:*"]
  redirectUris: ["${redirectUri}"]
  postLogoutRedirectUris: ["${postLogoutUri}"]
`,
);
const latchkey = startLatchkey(clientsFile, join(dir, 'state'));
const profile = mkdtempSync(join(tmpdir(), 'latchkey-chromium-'));
let context;
let cleaned = false;
async function cleanUp() {
  if (cleaned) return;
  cleaned = true;
  await context?.close().catch(() => {});
  await stop(latchkey.child);
  await app.close();
  await other.close();
  rmSync(profile, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    latchkey.child.kill('SIGKILL');
    process.exit(1);
  });
}
process.on('exit', () => latchkey.child.kill('SIGKILL'));

let base;
let meta;
let page;
let jwks;
const pkce = { verifier: b64url(randomBytes(32)) };
pkce.challenge = b64url(sha256(pkce.verifier));
const state = b64url(randomBytes(16));
const nonce = b64url(randomBytes(16));
let callback;
let tokens;

const authorizeUrl = (s) => {
  const u = new URL(meta.authorization_endpoint);
  u.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: redirectUri,
    scope: 'openid orders:read',
    state: s,
    nonce,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  }).toString();
  return u.href;
};

try {
  await step('server starts over TLS and serves discovery', async () => {
    const addr = await latchkey.listening;
    base = `https://localhost:${addr.split(':').pop()}`;
    const res = await fetch(`${base}/.well-known/openid-configuration`);
    check(res.status === 200, `discovery: ${res.status}`);
    meta = await res.json();
    for (const m of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'end_session_endpoint']) {
      check(meta[m]?.startsWith(base), `${m}: ${meta[m]}`);
    }
    jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
  });

  await step('Chromium starts, trusting exactly this run\'s certificate', async () => {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: env('CHROMIUM'),
      headless: true,
      timeout: TIMEOUT_MS,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--ignore-certificate-errors-spki-list=${env('BROWSER_SPKI')}`,
      ],
    });
    context.setDefaultTimeout(TIMEOUT_MS);
    page = context.pages()[0] ?? (await context.newPage());
  });

  await step('a certificate of the same CA that Chromium was not told about is refused', async () => {
    // In a page of its own, so its error page cannot interrupt the walk's navigations.
    const probe = await context.newPage();
    let error = '';
    try {
      await probe.goto(other.url);
    } catch (e) {
      error = String(e.message);
    } finally {
      await probe.close();
    }
    check(/ERR_CERT_AUTHORITY_INVALID/.test(error), `not refused as untrusted: ${error || 'loaded'}`);
  });

  await step('authorize shows the login page (screenshot)', async () => {
    const res = await page.goto(authorizeUrl(state));
    check(res.status() === 200, `status ${res.status()}`);
    check(page.url().startsWith(`${base}/oauth2/authorize`), page.url());
    check((await page.title()) === 'Sign in', `title ${await page.title()}`);
    check(res.headers()['x-frame-options'] === 'DENY', 'X-Frame-Options');
    // Labelled fields a password manager recognises.
    const username = page.getByLabel('Username');
    const password = page.getByLabel('Password');
    check((await username.getAttribute('autocomplete')) === 'username', 'username autocomplete');
    check((await password.getAttribute('autocomplete')) === 'current-password', 'password autocomplete');
    check(await page.getByText(CLIENT_ID).isVisible(), 'the client is named');
    await page.screenshot({ path: join(OUT, 'login-page.png'), fullPage: true });
  });

  await step('a wrong password and an unknown user get the same page, no hint', async () => {
    const attempt = async (username, password) => {
      await page.getByLabel('Username').fill(username);
      await page.getByLabel('Password').fill(password);
      await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign in' }).click()]);
      await page.waitForSelector('p.error');
      return { alert: await page.getByRole('alert').innerText(), html: await page.content() };
    };
    const wrong = await attempt(USER.username, 'not-the-password');
    check(wrong.alert === 'Wrong username or password.', `alert: ${wrong.alert}`);
    await page.screenshot({ path: join(OUT, 'wrong-password.png'), fullPage: true });
    const unknown = await attempt('nobody-here', 'not-the-password');
    check(unknown.alert === wrong.alert, `unknown user: ${unknown.alert}`);
    check(unknown.html === wrong.html, 'the page for an unknown user differs from a wrong password');
    const cookies = await context.cookies(base);
    check(!cookies.some((c) => c.name === '__Host-latchkey-session'), 'a session after failed logins');
  });

  await step('the right password leads to the consent page', async () => {
    await page.getByLabel('Username').fill(USER.username);
    await page.getByLabel('Password').fill(USER.password);
    await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign in' }).click()]);
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    check((await page.title()) === 'Allow access', `title ${await page.title()}`);
    check(await page.getByText('orders:read').isVisible(), 'the scope is listed');
    await page.screenshot({ path: join(OUT, 'consent-page.png'), fullPage: true });
    const session = (await context.cookies(base)).find((c) => c.name === '__Host-latchkey-session');
    check(session, 'no session cookie');
    check(session.secure && session.httpOnly && session.sameSite === 'Lax' && session.path === '/', `session cookie ${JSON.stringify(session)}`);
  });

  await step('Allow sends the browser to the callback with code, state and iss', async () => {
    const since = app.count();
    await page.getByRole('button', { name: 'Allow' }).click();
    callback = await app.next('/cb', since);
    await page.waitForURL((u) => u.href.startsWith(redirectUri));
    check(callback.searchParams.get('state') === state, `state ${callback.searchParams.get('state')}`);
    check(callback.searchParams.get('iss') === meta.issuer, `iss ${callback.searchParams.get('iss')}`);
    check(callback.searchParams.get('code'), 'no code');
  });

  await step('the code and the verifier become tokens at the token endpoint', async () => {
    const form = (params) => ({
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params),
    });
    const exchange = {
      grant_type: 'authorization_code',
      client_id: CLIENT_ID,
      code: callback.searchParams.get('code'),
      redirect_uri: redirectUri,
    };
    // Without the verifier the code is refused; it is bound to the browser's PKCE challenge.
    const without = await fetch(meta.token_endpoint, form(exchange));
    check(without.status === 400 && (await without.json()).error === 'invalid_grant', 'a code redeemed without its verifier');
    // The refusal does not spend the code: the request that has the verifier redeems it.
    const res = await fetch(meta.token_endpoint, form({ ...exchange, code_verifier: pkce.verifier }));
    const body = await res.json();
    check(res.status === 200, `token: ${res.status} ${JSON.stringify(body)}`);
    tokens = body;
  });

  await step('the id_token verifies through the JWKS (iss, aud, azp, nonce, at_hash)', async () => {
    const { payload, protectedHeader } = await jose.jwtVerify(tokens.id_token, jwks, {
      issuer: meta.issuer,
      audience: CLIENT_ID,
    });
    check(meta.id_token_signing_alg_values_supported.includes(protectedHeader.alg), `alg ${protectedHeader.alg}`);
    check(payload.nonce === nonce, `nonce ${payload.nonce}`);
    check(payload.azp === CLIENT_ID, `azp ${payload.azp}`);
    const digest = sha256(tokens.access_token);
    check(payload.at_hash === b64url(digest.subarray(0, digest.length / 2)), 'at_hash');
    check(typeof payload.auth_time === 'number' && payload.auth_time <= payload.iat, 'auth_time');
    tokens.sub = payload.sub;
  });

  await step('the access token verifies through the JWKS (the person, the client, the org)', async () => {
    const { payload } = await jose.jwtVerify(tokens.access_token, jwks, { issuer: meta.issuer });
    check(payload.sub === tokens.sub, 'sub differs from the id_token');
    check(payload.clientId === CLIENT_ID, `clientId ${payload.clientId}`);
    check(payload.organization === USER.organization, `organization ${payload.organization}`);
    check(payload.scope === 'openid orders:read', `scope ${payload.scope}`);
  });

  await step('while signed in, the next authorization skips the login page', async () => {
    await page.goto(authorizeUrl(`${state}-again`));
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    check((await page.getByLabel('Password').count()) === 0, 'the login page was shown');
  });

  await step('logout at end_session_endpoint ends the session', async () => {
    const since = app.count();
    const u = new URL(meta.end_session_endpoint);
    u.search = new URLSearchParams({
      client_id: CLIENT_ID,
      post_logout_redirect_uri: postLogoutUri,
      id_token_hint: tokens.id_token,
      state: 'bye-state',
    }).toString();
    await page.goto(u.href);
    const bye = await app.next('/bye', since);
    check(bye.searchParams.get('state') === 'bye-state', `state ${bye.searchParams.get('state')}`);
    const cookies = await context.cookies(base);
    check(!cookies.some((c) => c.name === '__Host-latchkey-session'), `the session cookie is still there`);
    const res = await page.goto(authorizeUrl(`${state}-after`));
    check(res.status() === 200 && (await page.title()) === 'Sign in', 'no login page after logout');
    check((await page.getByLabel('Password').count()) === 1, 'no password field after logout');
  });
} finally {
  await cleanUp();
}

for (const [verdict, name, detail] of results) {
  console.log(`${verdict} ${name}${detail ? `: ${detail}` : ''}`);
}
const passed = results.filter((r) => r[0] === 'PASS').length;
const fails = results.filter((r) => r[0] === 'FAIL').length;
const skipped = results.filter((r) => r[0] === 'SKIP').length;
if (fails) {
  console.log('--- latchkey log (last 40 lines)');
  console.log(latchkey.logs.slice(-40).join('\n'));
}
console.log(`browser: ${passed} passed, ${fails} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = fails || !passed ? 1 : 0;
