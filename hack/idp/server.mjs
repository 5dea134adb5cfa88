// Test identity provider for authgate: npm `oidc-provider` (a certified OpenID
// Provider) with an automated login/consent so tests need no browser.
//
//   node server.mjs CONFIG.json     prints `READY <issuer>` once listening
//
// CONFIG.json fields:
//   issuer            "http://127.0.0.1:PORT" or "https://localhost:PORT"
//   host, port        where to listen (default 127.0.0.1, port from issuer)
//   tls               optional {cert, key}: PEM paths, serve https
//   clients           oidc-provider client metadata; an extra `extra_token_claims`
//                     object is merged into that client's access tokens
//   resources         {"<resource indicator URL>": {scope, alg, accessTokenTTL,
//                      accessTokenFormat ("jwt" default, or "opaque")}}
//   defaultResource   optional resource used when a request names none
//   user              {sub, claims}: the account every interaction logs in;
//                     claims go into its ID tokens and access tokens
//   extraTokenClaims  optional object merged into every access token
//   jwksPath          private JWKS file (RS256, ES256 and EdDSA keys, each with
//                     alg, use and kid; tests/infra/idp.py writes a fresh one).
//                     Not generated here: Node 20 can deadlock when a GC runs
//                     during the JWK export of a freshly generated RSA key
//                     (KeyGenJob destructor vs ExportJWK, seen ~1 start in 10).
//   exchange          optional RFC 8693 token exchange grant
//                     (urn:ietf:params:oauth:grant-type:token-exchange):
//                     {clients: [client ids allowed to exchange], scopes: "allowed
//                      scopes", audiences: optional [allowed audiences], ttl: 300,
//                      mode: "ok" | "garbage" | "error500", delayMs: 0}
//                     The subject token must be an at+jwt access token signed by
//                     this provider's keys and unexpired. Every confidential
//                     client may ask (so others get unauthorized_client, not
//                     invalid_request); only `clients` are served.
//   mtls              optional {port, host, cert, key, ca, certificateBoundAccessTokens}:
//                     a second, https listener requesting client certificates
//                     (RFC 8705 tls_client_auth, verified against `ca`); advertised
//                     as mtls_endpoint_aliases.token_endpoint. With
//                     certificateBoundAccessTokens (default false), tokens of clients
//                     whose metadata has tls_client_certificate_bound_access_tokens
//                     carry cnf.x5t#S256 of the certificate they came with (RFC 8705 §3)
//   dpop              optional {algorithms: [...], requireNonce: false}: DPoP (RFC 9449)
//                     proofs at the token endpoint; a token requested with one carries
//                     cnf.jkt. oidc-provider 9 has DPoP on by default (ES256, EdDSA
//                     proofs): this sets the proof algorithms (e.g. adds RS256)
//   testControls      true: GET /__test/exchange -> {count, mode, delayMs};
//                     POST /__test/exchange {mode, delayMs, resetCount}
//
// Everything lives in memory: a restart forgets clients' tokens and grants.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const issuerUrl = new URL(config.issuer);
const host = config.host ?? '127.0.0.1';
const port = config.port ?? Number(issuerUrl.port);
const resources = config.resources ?? {};
const user = config.user ?? { sub: 'alice', claims: {} };

const started = performance.now();
if (!config.jwksPath) throw new Error('config.jwksPath is required');
const jwks = JSON.parse(fs.readFileSync(config.jwksPath, 'utf8'));

// Public halves of the signing keys, to verify subject tokens; one RS256 key to
// sign exchanged tokens with.
const publicJwks = {
  keys: jwks.keys.map((jwk) => {
    const { kid, alg, use } = jwk;
    const pub = crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'jwk' });
    return { ...pub, kid, alg, use };
  }),
};
const localJwks = jose.createLocalJWKSet(publicJwks);
const rsaJwk = jwks.keys.find((k) => k.alg === 'RS256') ?? jwks.keys.find((k) => k.kty === 'RSA' && !k.alg);

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const exchange = config.exchange
  ? {
    clients: new Set(config.exchange.clients ?? []),
    scopes: new Set((config.exchange.scopes ?? '').split(' ').filter(Boolean)),
    audiences: config.exchange.audiences ? new Set(config.exchange.audiences) : undefined,
    ttl: config.exchange.ttl ?? 300,
    mode: config.exchange.mode ?? 'ok',
    delayMs: config.exchange.delayMs ?? 0,
    count: 0,
  }
  : undefined;

// With the exchange grant registered, every confidential client may request it;
// the handler then answers unauthorized_client to those not in exchange.clients.
const clients = (config.clients ?? []).map((client) => {
  if (!exchange || client.token_endpoint_auth_method === 'none') return client;
  const grantTypes = client.grant_types ?? ['authorization_code'];
  if (grantTypes.includes(TOKEN_EXCHANGE)) return client;
  return { ...client, grant_types: [...grantTypes, TOKEN_EXCHANGE] };
});

const mtlsTokenEndpoint = config.mtls
  ? `https://${config.mtls.publicHost ?? issuerUrl.hostname}:${config.mtls.port}/token`
  : undefined;

// DN comparison, order and whitespace insensitive: "CN=a, O=b" == "O=b\nCN=a".
const normalizeDn = (dn) => dn.split(/[\n,]/).map((part) => part.trim()).filter(Boolean).sort().join(',');
const peerCertificate = (ctx) => {
  const socket = ctx.req.socket;
  if (typeof socket?.getPeerX509Certificate !== 'function') return undefined;
  return socket.getPeerX509Certificate() ?? undefined;
};

const clientExtraClaims = (client) => client?.metadata()?.extra_token_claims ?? {};

const dpop = config.dpop ?? {};
const certificateBound = config.mtls?.certificateBoundAccessTokens === true;

const provider = new Provider(config.issuer, {
  clients,
  jwks,
  ...(config.mtls ? {
    clientAuthMethods: ['client_secret_basic', 'client_secret_jwt', 'client_secret_post',
      'private_key_jwt', 'none', 'tls_client_auth'],
  } : {}),
  ...(mtlsTokenEndpoint ? { discovery: { mtls_endpoint_aliases: { token_endpoint: mtlsTokenEndpoint } } } : {}),
  ...(dpop.algorithms ? { enabledJWA: { dPoPSigningAlgValues: dpop.algorithms } } : {}),
  // Resource-server scopes (mcp:read, ...) must stay out of this list, or the
  // consent prompt keeps asking for them.
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub', ...Object.keys(user.claims ?? {})] }, // for ID tokens and userinfo
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  pkce: { required: () => true }, // oidc-provider 9 only knows S256
  // Every client's refresh tokens rotate (the default rotates only public clients'), as
  // an IdP in front of the facade should be configured: reuse of an old one then fails.
  rotateRefreshToken: () => true,
  clientBasedCORS: () => true,
  extraClientMetadata: {
    properties: ['extra_token_claims'],
    validator(ctx, key, value) {
      if (key === 'extra_token_claims' && value !== undefined
          && (typeof value !== 'object' || Array.isArray(value))) {
        throw new errors.InvalidClientMetadata('extra_token_claims must be an object');
      }
    },
  },
  async findAccount(ctx, sub) {
    if (sub !== user.sub) return undefined;
    return { accountId: sub, claims: async () => ({ ...user.claims, sub }) };
  },
  // Merged under the standard claims (iss, sub, aud, ... cannot be overridden).
  async extraTokenClaims(ctx, token) {
    const userClaims = token.accountId === user.sub ? user.claims : {};
    // Opaque client_credentials tokens introspect with sub = client_id, as the
    // JWT ones carry it (RFC 9068 §2.2); oidc-provider leaves sub out otherwise.
    const opaqueSub = token.kind === 'ClientCredentials'
      && token.resourceServer?.accessTokenFormat === 'opaque' ? { sub: token.clientId } : {};
    return {
      ...config.extraTokenClaims, ...clientExtraClaims(token.client), ...userClaims, ...opaqueSub,
    };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: {
      enabled: true,
      requireNonce: () => dpop.requireNonce === true,
      // Stateless nonces need a secret; only asked for when requireNonce is on.
      ...(dpop.requireNonce ? { nonceSecret: crypto.randomBytes(32) } : {}),
    },
    ...(config.mtls ? {
      mTLS: {
        enabled: true,
        tlsClientAuth: true,
        certificateBoundAccessTokens: certificateBound,
        getCertificate(ctx) {
          return peerCertificate(ctx)?.toString();
        },
        certificateAuthorized(ctx) {
          return ctx.req.socket?.authorized === true;
        },
        certificateSubjectMatches(ctx, property, expected) {
          const cert = peerCertificate(ctx);
          if (!cert) return false;
          const sans = (cert.subjectAltName ?? '').split(',').map((s) => s.trim());
          switch (property) {
            case 'tls_client_auth_subject_dn':
              return normalizeDn(cert.subject) === normalizeDn(expected);
            case 'tls_client_auth_san_dns':
              return sans.includes(`DNS:${expected}`);
            case 'tls_client_auth_san_uri':
              return sans.includes(`URI:${expected}`);
            case 'tls_client_auth_san_ip':
              return sans.includes(`IP Address:${expected}`);
            case 'tls_client_auth_san_email':
              return sans.includes(`email:${expected}`);
            default:
              return false;
          }
        },
      },
    } : {}),
    resourceIndicators: {
      enabled: true,
      // A single granted resource is used without the client naming it again.
      async defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf.length === 1 ? oneOf[0] : oneOf;
        return config.defaultResource;
      },
      async useGrantedResource() { return true; },
      async getResourceServerInfo(ctx, resourceIndicator) {
        const server = resources[resourceIndicator];
        if (!server) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        const info = {
          scope: server.scope ?? '',
          audience: resourceIndicator,
          accessTokenTTL: server.accessTokenTTL ?? 600,
          accessTokenFormat: server.accessTokenFormat ?? server.format ?? 'jwt',
        };
        if (info.accessTokenFormat === 'jwt') info.jwt = { sign: { alg: server.alg ?? 'RS256' } };
        return info;
      },
    },
  },
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
    AuthorizationCode: 60,
    IdToken: 600,
    RefreshToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
});

// RFC 8693 token exchange. Runs after client authentication (client_secret_basic
// on either listener, or tls_client_auth on the mTLS one).
async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  exchange.count += 1;
  if (exchange.delayMs > 0) await new Promise((resolve) => { setTimeout(resolve, exchange.delayMs); });
  if (exchange.mode === 'garbage') {
    ctx.status = 200;
    ctx.type = 'text/html';
    ctx.body = '<html><body>definitely not JSON {</body></html>';
    return;
  }
  if (exchange.mode === 'error500') {
    ctx.status = 500;
    ctx.type = 'text/plain';
    ctx.body = 'internal server error (test mode error500)';
    return;
  }
  if (!exchange.clients.has(client.clientId)) {
    throw new errors.UnauthorizedClient('client is not allowed to exchange tokens');
  }
  if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token');
  if (![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.subject_token_type)) {
    throw new errors.InvalidRequest('subject_token_type must be access_token or jwt');
  }
  if (params.requested_token_type && ![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.requested_token_type)) {
    throw new errors.InvalidRequest('requested_token_type is not supported');
  }
  if (params.actor_token && !params.actor_token_type) {
    throw new errors.InvalidRequest('actor_token_type is required with actor_token');
  }
  let subject;
  try {
    ({ payload: subject } = await jose.jwtVerify(params.subject_token, localJwks, {
      issuer: provider.issuer,
      typ: 'at+jwt',
      algorithms: ['RS256', 'ES256', 'EdDSA'],
    }));
  } catch (err) {
    const grantError = new errors.InvalidGrant();
    grantError.error_description = `subject_token is invalid (${err.code ?? err.name})`;
    throw grantError;
  }
  if (!subject.sub) {
    const grantError = new errors.InvalidGrant();
    grantError.error_description = 'subject_token has no sub';
    throw grantError;
  }
  const audience = params.audience ?? params.resource;
  if (!audience) throw new errors.InvalidTarget('audience or resource is required');
  if (exchange.audiences && !exchange.audiences.has(audience)) {
    throw new errors.InvalidTarget(`audience ${audience} is not allowed`);
  }
  const requested = params.scope
    ? params.scope.split(' ').filter(Boolean)
    : (subject.scope ?? '').split(' ').filter((s) => exchange.scopes.has(s));
  const refused = requested.filter((s) => !exchange.scopes.has(s));
  if (refused.length) throw new errors.InvalidScope('requested scope is not allowed', refused.join(' '));
  const scope = requested.join(' ');

  const now = Math.floor(Date.now() / 1000);
  const act = { sub: client.clientId, ...(subject.act ? { act: subject.act } : {}) };
  const claims = {
    client_id: client.clientId, act, ...(scope ? { scope } : {}),
  };
  const key = await jose.importJWK(rsaJwk, 'RS256');
  const accessToken = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: rsaJwk.kid })
    .setIssuer(provider.issuer)
    .setSubject(subject.sub)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + exchange.ttl)
    .setJti(crypto.randomUUID())
    .sign(key);
  ctx.body = {
    access_token: accessToken,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: exchange.ttl,
    ...(scope ? { scope } : {}),
  };
}

if (exchange) {
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, [
    'subject_token', 'subject_token_type', 'audience', 'resource', 'scope',
    'requested_token_type', 'actor_token', 'actor_token_type',
  ]);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

// Test controls: flip the exchange into a failure mode at runtime, count calls.
if (config.testControls) {
  provider.use(async (ctx, next) => {
    if (ctx.path !== '/__test/exchange') return next();
    if (!exchange) {
      ctx.status = 404;
      ctx.body = { error: 'exchange is not configured' };
      return undefined;
    }
    if (ctx.method === 'POST') {
      let body;
      try {
        body = await readJson(ctx.req);
      } catch {
        ctx.status = 400;
        ctx.body = { error: 'body must be JSON' };
        return undefined;
      }
      if (body.mode !== undefined) {
        if (!['ok', 'garbage', 'error500'].includes(body.mode)) {
          ctx.status = 400;
          ctx.body = { error: `unknown mode ${body.mode}` };
          return undefined;
        }
        exchange.mode = body.mode;
      }
      if (body.delayMs !== undefined) exchange.delayMs = Number(body.delayMs) || 0;
      if (body.resetCount) exchange.count = 0;
    } else if (ctx.method !== 'GET') {
      ctx.status = 405;
      return undefined;
    }
    ctx.body = { count: exchange.count, mode: exchange.mode, delayMs: exchange.delayMs };
    return undefined;
  });
}

// Automated interactions, in place of a login page: the first visit logs in the
// configured user, the second grants everything that was asked for. Each answer
// is a 303 back to the authorization endpoint, so plain redirects finish a flow.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const { prompt, params, session, grantId } = await provider.interactionDetails(ctx.req, ctx.res);
  ctx.respond = false; // interactionFinished writes the response itself
  if (prompt.name === 'login') {
    return provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId: user.sub },
    }, { mergeWithLastSubmission: false });
  }
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const { details } = prompt;
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const consent = { grantId: await grant.save() };
  return provider.interactionFinished(ctx.req, ctx.res, { consent }, { mergeWithLastSubmission: true });
});

const server = config.tls
  ? https.createServer({
    cert: fs.readFileSync(config.tls.cert),
    key: fs.readFileSync(config.tls.key),
  }, provider.callback())
  : http.createServer(provider.callback());

// A listener that cannot bind ends the process with the reason, so the caller
// sees it at once instead of waiting for READY.
function listen(srv, listenPort, listenHost) {
  return new Promise((resolve) => {
    srv.once('error', (err) => {
      process.stderr.write(`cannot listen on ${listenHost}:${listenPort}: ${err.message}\n`);
      process.exit(1);
    });
    srv.listen(listenPort, listenHost, resolve);
  });
}

const listening = [listen(server, port, host)];

// RFC 8705 listener: asks for a client certificate but lets the handshake
// through without one (or with an untrusted one), so oidc-provider answers
// invalid_client instead of the TLS layer failing; `authorized` says whether the
// certificate chains to `ca`.
if (config.mtls) {
  const mtlsServer = https.createServer({
    cert: fs.readFileSync(config.mtls.cert),
    key: fs.readFileSync(config.mtls.key),
    ca: fs.readFileSync(config.mtls.ca),
    requestCert: true,
    rejectUnauthorized: false,
  }, provider.callback());
  listening.push(listen(mtlsServer, config.mtls.port, config.mtls.host ?? host));
}

Promise.all(listening).then(() => {
  process.stderr.write(`started in ${Math.round(performance.now() - started)} ms\n`);
  process.stdout.write(`READY ${provider.issuer}\n`);
});

// Nothing to flush: state is in memory, so a signal ends the process at once.
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
