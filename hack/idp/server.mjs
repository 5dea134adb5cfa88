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
//   jwksPath          optional private JWKS file; default: fresh RSA 2048,
//                     EC P-256 and Ed25519 keys generated at startup
//
// Everything lives in memory: a restart forgets clients' tokens and grants.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const issuerUrl = new URL(config.issuer);
const host = config.host ?? '127.0.0.1';
const port = config.port ?? Number(issuerUrl.port);
const resources = config.resources ?? {};
const user = config.user ?? { sub: 'alice', claims: {} };

// One signing key per algorithm family; `alg` pins each key to one algorithm so
// a resource's `alg` selects exactly one key.
function generateJwks() {
  const keys = [
    ['RS256', crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['ES256', crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['EdDSA', crypto.generateKeyPairSync('ed25519')],
  ].map(([alg, { privateKey }]) => {
    const jwk = privateKey.export({ format: 'jwk' });
    return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomUUID().slice(0, 8)}` };
  });
  return { keys };
}

const jwks = config.jwksPath
  ? JSON.parse(fs.readFileSync(config.jwksPath, 'utf8'))
  : generateJwks();

const clientExtraClaims = (client) => client?.metadata()?.extra_token_claims ?? {};

const provider = new Provider(config.issuer, {
  clients: config.clients ?? [],
  jwks,
  // Resource-server scopes (mcp:read, ...) must stay out of this list, or the
  // consent prompt keeps asking for them.
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub', ...Object.keys(user.claims ?? {})] }, // for ID tokens and userinfo
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  pkce: { required: () => true }, // oidc-provider 9 only knows S256
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
    return { ...config.extraTokenClaims, ...clientExtraClaims(token.client), ...userClaims };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
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
          accessTokenFormat: server.accessTokenFormat ?? 'jwt',
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

server.listen(port, host, () => {
  process.stdout.write(`READY ${provider.issuer}\n`);
});

// Nothing to flush: state is in memory, so a signal ends the process at once.
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
