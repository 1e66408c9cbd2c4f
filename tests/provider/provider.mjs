// Test identity provider for keyturn's integration tests.
//
// Usage: node provider.mjs CONFIG.json READYFILE
//
// Starts panva/oidc-provider on 127.0.0.1 (random port) and writes one line of JSON
// {"issuer": "...", "pid": N} to READYFILE (atomically: tmp file + rename) once it is
// listening. Exits on SIGTERM/SIGINT and when its parent process goes away.
//
// CONFIG.json (written by tests/support/providerfixture.py):
//   clients            array of oidc-provider client metadata; extra per-client properties:
//                        access_token_ttl       seconds (default 3600) for access tokens
//                        refresh_token_ttl      seconds for refresh tokens (default: top-level)
//                        force_refresh_rotation rotate refresh tokens on every use (confidential)
//   refresh_token_ttl  default refresh-token lifetime, seconds (default 14 days)
//   device_code_ttl    device-code lifetime, seconds (default 600)
//   issuer             the issuer URL to advertise (default: the listening URL, 127.0.0.1:PORT)
//
// Test-control endpoints (this test server only):
//   GET  /__test/stats[?log=1]      {"token_requests": {client_id: {grant_type: n}}, "total": n}
//                                   (+ "log": [{t, client_id, grant_type, status}] with ?log=1).
//                                   client_id from the body, Basic auth or client_assertion iss;
//                                   "_unknown" if none. Every POST /token is counted, including
//                                   rejected and injected-failure ones.
//   POST /__test/reset[?all=1]      clear counts and pending fail_next (?all=1: device knobs too)
//   POST /__test/mint_refresh_token {"client_id", "scope", "account_id", "resource"?,
//                                    "expires_in"?, "gty"?} -> {"refresh_token", "grant_id", ...}
//                                   (+ "count": n -> {"refresh_tokens": [n tokens]}, benchmarks)
//   POST /__test/device_knobs       {"interval": n|null, "slow_down_times": n}
//   POST /__test/fail_next          {"status": 503, "count": 2, "body"?: {...}, "retry_after"?}
//   GET  /__test/health
// Also enforced here (oidc-provider accepts them interchangeably): client_secret_basic clients
// must not send client_secret in the body, client_secret_post clients must not send Basic auth
// (401 invalid_client, "client authentication method mismatch ...").

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as querystring from 'node:querystring';
import { promisify } from 'node:util';
import * as jose from 'jose';  // TEST-ONLY grants below

const [configPath, readyFile] = process.argv.slice(2);
if (!configPath || !readyFile) {
  console.error('usage: node provider.mjs CONFIG.json READYFILE');
  process.exit(2);
}

const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const DAY = 24 * 60 * 60;
const DEFAULT_AT_TTL = 3600;
const DEFAULT_RT_TTL = Number.isInteger(cfg.refresh_token_ttl) ? cfg.refresh_token_ttl : 14 * DAY;
const DEFAULT_DEVICE_CODE_TTL = Number.isInteger(cfg.device_code_ttl) ? cfg.device_code_ttl : 600;
const SCOPES = ['openid', 'offline_access', 'profile', 'email', 'api:read', 'api:write'];
const EXTRA_CLIENT_PROPS = ['access_token_ttl', 'refresh_token_ttl', 'force_refresh_rotation'];

// ---------------------------------------------------------------------------------------------
// Parent-death watchdog and signals: never outlive the test run.
// ---------------------------------------------------------------------------------------------
const initialPpid = process.ppid;
setInterval(() => {
  if (process.ppid !== initialPpid || process.ppid === 1) {
    process.exit(0);
  }
}, 500).unref();
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// Plain Map storage (the stock adapter is an LRU that forgets after ~1000 entries).
// Expired entries are kept for a grace period so the provider itself reports them as expired
// (expired_token for device codes, "refresh token is expired"), then swept.
// ---------------------------------------------------------------------------------------------
const EXPIRED_GRACE_MS = 10 * 60 * 1000;
const store = new Map(); // "Model:id" -> { payload, exp (ms epoch or Infinity) }
const grantIndex = new Map(); // grantId -> Set("Model:id")
const userCodeIndex = new Map(); // userCode -> id (DeviceCode)
const sessionUidIndex = new Map(); // uid -> id (Session)
const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

function storeGet(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.exp + EXPIRED_GRACE_MS <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

setInterval(() => {
  const now = Date.now();
  for (const [key, entry] of store) {
    if (entry.exp + EXPIRED_GRACE_MS <= now) store.delete(key);
  }
  for (const [grantId, members] of grantIndex) {
    for (const key of members) if (!store.has(key)) members.delete(key);
    if (members.size === 0) grantIndex.delete(grantId);
  }
  for (const index of [userCodeIndex, sessionUidIndex]) {
    for (const [k, key] of index) if (!store.has(key)) index.delete(k);
  }
}, 30_000).unref();

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const exp = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(key, { payload, exp });
    if (GRANTABLE.has(this.model) && payload.grantId) {
      let members = grantIndex.get(payload.grantId);
      if (!members) {
        members = new Set();
        grantIndex.set(payload.grantId, members);
      }
      members.add(key);
    }
    if (payload.userCode) userCodeIndex.set(payload.userCode, key);
    if (this.model === 'Session' && payload.uid) sessionUidIndex.set(payload.uid, key);
  }

  async find(id) {
    return storeGet(this.key(id));
  }

  async findByUserCode(userCode) {
    const key = userCodeIndex.get(userCode);
    return key ? storeGet(key) : undefined;
  }

  async findByUid(uid) {
    const key = sessionUidIndex.get(uid);
    return key ? storeGet(key) : undefined;
  }

  async consume(id) {
    const payload = storeGet(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const members = grantIndex.get(grantId);
    if (!members) return;
    for (const key of members) store.delete(key);
    grantIndex.delete(grantId);
  }
}

// ---------------------------------------------------------------------------------------------
// Keys: EC P-256 (ES256) and Ed25519 are instant; RSA (RS256 id tokens are the client default)
// is generated concurrently.
// ---------------------------------------------------------------------------------------------
const generateKeyPair = promisify(crypto.generateKeyPair);

async function makeJwk(type, options, alg) {
  const { privateKey } = await generateKeyPair(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${alg.toLowerCase()}-${crypto.randomBytes(4).toString('hex')}`, alg, use: 'sig' };
}

// Start key generation (libuv thread pool) before loading oidc-provider (main thread): both
// dominate start-up and overlap nicely.
const keysPromise = Promise.all([
  makeJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
  makeJwk('ed25519', {}, 'EdDSA'),
  makeJwk('rsa', { modulusLength: 2048 }, 'RS256'),
]);
const { default: Provider, errors: oidcErrors } = await import('oidc-provider');

// ---------------------------------------------------------------------------------------------
// Test-control state
// ---------------------------------------------------------------------------------------------
const clientsById = new Map((cfg.clients || []).map((c) => [c.client_id, c]));
const state = {
  counts: {}, // client_id -> grant_type -> n
  total: 0,
  log: [], // [{t, client_id, grant_type, status}]
  failNext: { count: 0, status: 503, body: null },
  device: { interval: null, slowDownTimes: 0 },
};
const LOG_LIMIT = 10_000;

function resetStats() {
  state.counts = {};
  state.total = 0;
  state.log = [];
}

function parseBasic(header) {
  if (typeof header !== 'string') return undefined;
  const m = /^basic\s+(\S+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return { id: safeDecode(decoded), secret: undefined };
  return { id: safeDecode(decoded.slice(0, i)), secret: safeDecode(decoded.slice(i + 1)) };
}

function safeDecode(s) {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

function assertionIssuer(assertion) {
  if (typeof assertion !== 'string') return undefined;
  try {
    const payload = JSON.parse(Buffer.from(assertion.split('.')[1], 'base64url').toString('utf8'));
    return typeof payload.iss === 'string' ? payload.iss : (typeof payload.sub === 'string' ? payload.sub : undefined);
  } catch {
    return undefined;
  }
}

function first(v) {
  return Array.isArray(v) ? v[0] : v;
}

function clientIdOf(ctx, body) {
  return first(body.client_id)
    || parseBasic(ctx.get('authorization'))?.id
    || assertionIssuer(first(body.client_assertion))
    || '_unknown';
}

const BODY_LIMIT = 56 * 1024;
async function readRawBody(req) {
  const chunks = [];
  let received = 0;
  for await (const chunk of req) {
    received += chunk.length;
    if (received > BODY_LIMIT) throw new Error('request entity too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, received);
}

function jsonError(ctx, status, error, description, headers = {}) {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Pragma', 'no-cache');
  for (const [k, v] of Object.entries(headers)) ctx.set(k, v);
  ctx.type = 'application/json';
  ctx.body = { error, error_description: description };
}

// ---------------------------------------------------------------------------------------------
// Server + provider
// ---------------------------------------------------------------------------------------------
// cfg.tls = {cert, key, client_ca} (PEM paths): serve https and ask every client for a certificate
// (verified against client_ca, but not required), for RFC 8705 tls_client_auth tests.
const server = cfg.tls
  ? https.createServer({
    cert: fs.readFileSync(cfg.tls.cert),
    key: fs.readFileSync(cfg.tls.key),
    ca: fs.readFileSync(cfg.tls.client_ca),
    requestCert: true,
    rejectUnauthorized: false,
  })
  : http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
// Where the server listens; the issuer is the same URL unless the config names another one
// (cfg.issuer: the URL of a fault proxy in front of it, so every endpoint it advertises,
// the JWKS too, goes through the proxy).
const listenUrl = `${cfg.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
const issuer = typeof cfg.issuer === 'string' && cfg.issuer ? cfg.issuer : listenUrl;

const [ecKey, edKey, rsaKey] = await keysPromise;

function clientProp(client, name) {
  if (!client) return undefined;
  if (client[name] !== undefined) return client[name];
  return clientsById.get(client.clientId)?.[name];
}

function accessTokenTtl(_ctx, token, client) {
  const v = clientProp(client, 'access_token_ttl');
  if (Number.isInteger(v) && v > 0) return v;
  return token?.resourceServer?.accessTokenTTL || DEFAULT_AT_TTL;
}

function isTestResource(resource) {
  return typeof resource === 'string'
    && (/^https:\/\/api\.example\.[^/]+/.test(resource) || /^http:\/\/127\.0\.0\.1([:/]|$)/.test(resource));
}

const configuration = {
  adapter: MapAdapter,
  clients: cfg.clients || [],
  clockTolerance: 0,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  jwks: { keys: [ecKey, edKey, rsaKey] },
  scopes: SCOPES,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  extraClientMetadata: {
    properties: EXTRA_CLIENT_PROPS,
    validator(_ctx, key, value) {
      if (value === undefined) return;
      if (key === 'force_refresh_rotation') {
        if (typeof value !== 'boolean') throw new Error(`${key} must be a boolean`);
      } else if (!Number.isInteger(value) || value <= 0) {
        throw new Error(`${key} must be a positive integer`);
      }
    },
  },
  async findAccount(_ctx, id) {
    if (!id) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.test`,
          email_verified: true,
          name: id.charAt(0).toUpperCase() + id.slice(1),
          preferred_username: id,
        };
      },
    };
  },
  async issueRefreshToken(_ctx, client, source) {
    return client.grantTypeAllowed('refresh_token') && source.scopes.has('offline_access');
  },
  rotateRefreshToken(ctx) {
    const { RefreshToken: refreshToken, Client: client } = ctx.oidc.entities;
    if (clientProp(client, 'force_refresh_rotation') === true) return true;
    if (refreshToken.totalLifetime() >= 365.25 * DAY) return false;
    if (client.clientAuthMethod === 'none' && !refreshToken.isSenderConstrained()) return true;
    return refreshToken.ttlPercentagePassed() >= 70;
  },
  pkce: {
    required: (_ctx, client) => client.clientAuthMethod === 'none',
  },
  enabledJWA: {
    clientAuthSigningAlgValues: ['HS256', 'HS384', 'HS512', 'RS256', 'PS256', 'ES256', 'Ed25519', 'EdDSA'],
  },
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    RefreshToken(_ctx, _token, client) {
      const v = clientProp(client, 'refresh_token_ttl');
      return Number.isInteger(v) && v > 0 ? v : DEFAULT_RT_TTL;
    },
    DeviceCode: () => DEFAULT_DEVICE_CODE_TTL,
    AuthorizationCode: () => 60,
    IdToken: () => 3600,
    Interaction: () => 3600,
    Session: () => 14 * DAY,
    Grant: () => 14 * DAY,
    BackchannelAuthenticationRequest: () => 600,
    PreAuthorizedCode: () => 600,
  },
  clientAuthMethods: [
    'client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
    ...(cfg.tls ? ['tls_client_auth'] : []),
  ],
  features: {
    // RFC 8705 §2.1 PKI mutual TLS, only on the https server.
    mTLS: {
      enabled: Boolean(cfg.tls),
      tlsClientAuth: true,
      getCertificate(ctx) {
        const peer = ctx.req.socket.getPeerCertificate?.();
        if (!peer || !peer.raw) return undefined;
        return new crypto.X509Certificate(peer.raw).toString();
      },
      certificateAuthorized(ctx) {
        return ctx.req.socket.authorized === true;
      },
      certificateSubjectMatches(ctx, property, expected) {
        if (property !== 'tls_client_auth_subject_dn') return false;
        const peer = ctx.req.socket.getPeerCertificate?.();
        if (!peer || !peer.raw) return false;
        // Node lists the RDNs outermost first; RFC 4514 strings list them innermost first.
        const subject = new crypto.X509Certificate(peer.raw).subject.split('\n').reverse().join(',');
        return subject === expected;
      },
    },
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, _client, oneOf) {
        if (Array.isArray(oneOf) && oneOf.length === 1) return oneOf[0];
        return oneOf || undefined;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(_ctx, resourceIndicator) {
        if (!isTestResource(resourceIndicator)) {
          throw new oidcErrors.InvalidTarget();
        }
        return {
          scope: 'api:read api:write',
          audience: resourceIndicator,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

// ---------------------------------------------------------------------------------------------
// TEST-ONLY grants (keyturn's JwtBearer and TokenExchange tests): oidc-provider ships neither.
// cfg.jwt_bearer_keys: {issuer: public JWK} trusted to sign RFC 7523 assertions.
// ---------------------------------------------------------------------------------------------
const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const seenJtis = new Map();

async function issueTestAccessToken(ctx, accountId, scope, body = {}) {
  const { client } = ctx.oidc;
  const grant = new provider.Grant({ accountId, clientId: client.clientId });
  if (scope) grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const at = new provider.AccessToken({ accountId, client, grantId, gty: 'test_grant', scope });
  const value = await at.save();
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { access_token: value, token_type: 'Bearer', expires_in: at.expiration, scope, ...body };
}

function testGrantError(ctx, error, description) {
  ctx.status = 400;
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { error, error_description: description };
}

provider.registerGrantType(JWT_BEARER_GRANT, async (ctx) => {
  const { assertion, scope } = ctx.oidc.params;
  const keys = cfg.jwt_bearer_keys || {};
  let payload;
  try {
    const { iss } = jose.decodeJwt(assertion);
    if (!keys[iss]) return testGrantError(ctx, 'invalid_grant', 'assertion issuer is not trusted');
    // RFC 7523 §3: aud must identify the authorization server; exp must be in the future.
    ({ payload } = await jose.jwtVerify(assertion, jose.createLocalJWKSet({ keys: [keys[iss]] }), {
      audience: [`${issuer}${TOKEN_PATH}`, issuer],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'jti'],
    }));
  } catch (err) {
    return testGrantError(ctx, 'invalid_grant', `invalid assertion (${err.code || err.name})`);
  }
  // RFC 7523 §3: "The authorization server MAY ensure that JWTs are not replayed".
  const jtiKey = `${payload.iss}\u0000${payload.jti}`;
  if (seenJtis.has(jtiKey)) return testGrantError(ctx, 'invalid_grant', 'assertion replayed (jti seen)');
  seenJtis.set(jtiKey, payload.exp);
  return issueTestAccessToken(ctx, payload.sub, scope);
}, ['assertion', 'scope']);

provider.registerGrantType(TOKEN_EXCHANGE_GRANT, async (ctx) => {
  const p = ctx.oidc.params;
  if (!p.subject_token || !p.subject_token_type) {
    return testGrantError(ctx, 'invalid_request', 'subject_token and subject_token_type are required');
  }
  if (p.subject_token_type !== ACCESS_TOKEN_TYPE) {
    return testGrantError(ctx, 'invalid_request', 'unsupported subject_token_type');
  }
  // A real token this provider issued: a user's access token or a client credentials token.
  const subject = (await provider.AccessToken.find(p.subject_token))
    || (await provider.ClientCredentials.find(p.subject_token));
  if (!subject || subject.isExpired) return testGrantError(ctx, 'invalid_grant', 'subject_token is not a valid access token');
  if (p.requested_token_type && p.requested_token_type !== ACCESS_TOKEN_TYPE) {
    return testGrantError(ctx, 'invalid_request', 'only access tokens are issued');
  }
  return issueTestAccessToken(ctx, subject.accountId || subject.clientId, p.scope, {
    issued_token_type: ACCESS_TOKEN_TYPE,
  });
}, ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type',
  'audience', 'resource', 'scope']);

// Routes (defaults of oidc-provider 9.x).
const TOKEN_PATH = '/token';
const DEVICE_AUTH_PATH = '/device/auth';
const CLIENT_AUTH_PATHS = new Set([TOKEN_PATH, DEVICE_AUTH_PATH, '/token/introspection', '/token/revocation']);
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

// --- 1. strip web-font @import from HTML responses (a browser must never leave loopback) ---
provider.use(async (ctx, next) => {
  await next();
  if (ctx.response.is('html') && ctx.body != null) {
    const html = typeof ctx.body === 'string' ? ctx.body : (Buffer.isBuffer(ctx.body) ? ctx.body.toString('utf8') : null);
    if (html !== null && html.includes('@import')) {
      ctx.body = html.replace(/@import\s+url\([^)]*\)\s*;?/g, '');
    }
  }
});

// --- 2. test-control endpoints ---
async function readJson(ctx) {
  const raw = await readRawBody(ctx.req);
  if (raw.length === 0) return {};
  return JSON.parse(raw.toString('utf8'));
}

async function mintRefreshToken(body) {
  const clientId = body.client_id;
  const client = await provider.Client.find(clientId);
  if (!client) throw Object.assign(new Error(`unknown client ${clientId}`), { status: 400 });
  const accountId = body.account_id || 'alice';
  const scope = body.scope || 'openid offline_access api:read';
  const resource = body.resource || undefined;
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope(scope);
  if (resource) {
    const rsScopes = scope.split(' ').filter((s) => s.startsWith('api:'));
    grant.addResourceScope(resource, rsScopes.join(' '));
  }
  const grantId = await grant.save();
  const rt = new provider.RefreshToken({
    accountId,
    client,
    grantId,
    gty: body.gty || 'authorization_code',
    scope,
    resource,
    rotations: 0,
    authTime: Math.floor(Date.now() / 1000),
    ...(Number.isInteger(body.expires_in) ? { expiresIn: body.expires_in } : {}),
  });
  const value = await rt.save();
  return { refresh_token: value, grant_id: grantId, account_id: accountId, scope };
}

provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/__test/')) return next();
  ctx.set('Cache-Control', 'no-store');
  try {
    const route = `${ctx.method} ${ctx.path}`;
    switch (route) {
      case 'GET /__test/stats':
        ctx.body = {
          token_requests: state.counts,
          total: state.total,
          log: ctx.query.log ? state.log : undefined,
        };
        return;
      case 'POST /__test/reset':
        resetStats();
        state.failNext = { count: 0, status: 503, body: null };
        if (ctx.query.all) state.device = { interval: null, slowDownTimes: 0 };
        ctx.body = { ok: true };
        return;
      case 'POST /__test/mint_refresh_token': {
        const body = await readJson(ctx);
        // "count": n (benchmarks/server_throughput.py): n tokens in one call, as
        // {"refresh_tokens": [...]}; without it, one token as before.
        if (Number.isInteger(body.count) && body.count > 0 && body.count <= 100_000) {
          const minted = [];
          for (let i = 0; i < body.count; i += 1) minted.push((await mintRefreshToken(body)).refresh_token);
          ctx.body = { refresh_tokens: minted };
        } else {
          ctx.body = await mintRefreshToken(body);
        }
        return;
      }
      case 'POST /__test/device_knobs': {
        const body = await readJson(ctx);
        state.device = {
          interval: Number.isInteger(body.interval) ? body.interval : null,
          slowDownTimes: Number.isInteger(body.slow_down_times) ? body.slow_down_times : 0,
        };
        ctx.body = { ok: true, ...body };
        return;
      }
      case 'POST /__test/fail_next': {
        const body = await readJson(ctx);
        state.failNext = {
          count: Number.isInteger(body.count) ? body.count : 1,
          status: Number.isInteger(body.status) ? body.status : 503,
          body: body.body && typeof body.body === 'object' ? body.body : null,
          retryAfter: body.retry_after,
        };
        ctx.body = { ok: true };
        return;
      }
      case 'GET /__test/health':
        ctx.body = { ok: true, issuer };
        return;
      default:
        ctx.status = 404;
        ctx.body = { error: 'not_found', path: ctx.path };
    }
  } catch (err) {
    ctx.status = err.status || 500;
    ctx.body = { error: 'test_control_error', error_description: String(err.message || err) };
  }
});

// --- 3. token/client-auth endpoints: counting, fail_next, auth-method enforcement, device knobs ---
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || !CLIENT_AUTH_PATHS.has(ctx.path) || !ctx.is('application/x-www-form-urlencoded')) {
    return next();
  }

  let raw;
  try {
    raw = await readRawBody(ctx.req);
  } catch (err) {
    return jsonError(ctx, 400, 'invalid_request', `failed to read the request body: ${err.message}`);
  }
  // Hand the already-read body to oidc-provider (it falls back to req.body).
  ctx.req.body = raw;
  const body = querystring.parse(raw.toString('utf8'));
  const clientId = clientIdOf(ctx, body);
  const isToken = ctx.path === TOKEN_PATH;
  const grantType = first(body.grant_type) || '_none';
  let logEntry;

  if (isToken) {
    state.counts[clientId] ||= {};
    state.counts[clientId][grantType] = (state.counts[clientId][grantType] || 0) + 1;
    state.total += 1;
    logEntry = { t: Date.now() / 1000, client_id: clientId, grant_type: grantType, status: null };
    if (state.log.length < LOG_LIMIT) state.log.push(logEntry);
  }

  try {
    if (isToken && state.failNext.count > 0) {
      state.failNext.count -= 1;
      const { status } = state.failNext;
      ctx.status = status;
      ctx.set('Cache-Control', 'no-store');
      if (state.failNext.retryAfter !== undefined) ctx.set('Retry-After', String(state.failNext.retryAfter));
      ctx.type = 'application/json';
      ctx.body = state.failNext.body || {
        error: status >= 500 ? 'temporarily_unavailable' : 'invalid_request',
        error_description: `injected failure (HTTP ${status})`,
      };
      return;
    }

    const registered = clientsById.get(clientId);
    const method = registered?.token_endpoint_auth_method || 'client_secret_basic';
    const basic = parseBasic(ctx.get('authorization'));
    if (registered && method === 'client_secret_basic' && body.client_secret !== undefined) {
      return jsonError(
        ctx, 401, 'invalid_client',
        'client authentication method mismatch: client is registered for client_secret_basic but sent client_secret in the request body',
        { 'WWW-Authenticate': 'Basic realm="keyturn-test-provider"' },
      );
    }
    if (registered && method === 'client_secret_post' && basic) {
      return jsonError(
        ctx, 401, 'invalid_client',
        'client authentication method mismatch: client is registered for client_secret_post but sent an HTTP Basic Authorization header',
        { 'WWW-Authenticate': 'Basic realm="keyturn-test-provider"' },
      );
    }

    if (isToken && grantType === DEVICE_GRANT && state.device.slowDownTimes > 0) {
      state.device.slowDownTimes -= 1;
      return jsonError(ctx, 400, 'slow_down', 'polling too frequently (injected by test knob)');
    }

    await next();

    if (ctx.path === DEVICE_AUTH_PATH && ctx.status === 200 && ctx.body && typeof ctx.body === 'object'
        && state.device.interval !== null) {
      ctx.body = { ...ctx.body, interval: state.device.interval };
    }
  } finally {
    if (logEntry) logEntry.status = ctx.status;
  }
});

// oidc-provider validates static clients lazily (first use); fail fast instead.
for (const clientId of clientsById.keys()) {
  try {
    if (!await provider.Client.find(clientId)) throw new Error('not found');
  } catch (err) {
    console.error(`invalid client ${JSON.stringify(clientId)}: ${err.error_description || err.message}`);
    process.exit(3);
  }
}

server.on('request', provider.callback());

const ready = `${JSON.stringify({ issuer, url: listenUrl, pid: process.pid })}\n`;
fs.writeFileSync(`${readyFile}.tmp`, ready);
fs.renameSync(`${readyFile}.tmp`, readyFile);
console.log(`ready ${issuer}`);
