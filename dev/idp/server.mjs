// Local OpenID Connect provider for Gatehouse development and tests.
// Wraps panva's oidc-provider with: device flow, a static account store,
// minimal offline HTML pages (no web fonts), and an ephemeral signing key.
// Usage: node server.mjs [--port N] [--users FILE] [--client-id ID]
//          [--client-secret S] [--redirect-uri URI]... [--device-code-ttl SECONDS]
//          [--interval SECONDS] [--no-device-flow]
import http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

// oidc-provider prints its NOTICEs with console.info (stdout). Tests read stdout,
// so keep it for the single "listening on" line and send everything else to stderr.
console.info = console.error;
// Everything is in memory, so there is nothing to flush: exit at once on a signal
// (registered first so a signal during startup is honoured too).
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
const { default: Provider } = await import('oidc-provider');

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    users: { type: 'string' },
    'client-id': { type: 'string', default: 'gatehouse' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true, default: ['http://127.0.0.1/callback'] },
    'device-code-ttl': { type: 'string', default: '600' },
    interval: { type: 'string', default: '5' },
    // An IdP without the device grant, for Gatehouse's SSH sign-in link.
    'no-device-flow': { type: 'boolean', default: false },
  },
});

for (const k of ['port', 'device-code-ttl', 'interval']) {
  if (!/^\d+$/.test(opt[k])) { console.error(`--${k} must be a non-negative integer`); process.exit(2); }
}

const DEFAULT_USERS = [
  { sub: 'alice', email: 'alice@example.com', password: 'alice-pw', name: 'Alice Example', groups: ['sre', 'dev'] },
  { sub: 'bob', email: 'bob@example.com', password: 'bob-pw', name: 'Bob Example', groups: ['dev'] },
  { sub: 'carol', email: 'carol@contractor.example', password: 'carol-pw', name: 'Carol Contractor', groups: ['contractors'] },
];
const users = opt.users ? JSON.parse(readFileSync(opt.users, 'utf8')) : DEFAULT_USERS;
const bySub = new Map(users.map((u) => [u.sub, u]));

async function findAccount(_ctx, sub) {
  const u = bySub.get(sub);
  if (!u) return undefined;
  return {
    accountId: u.sub,
    async claims() {
      return {
        sub: u.sub,
        email: u.email,
        email_verified: u.email_verified ?? true,
        name: u.name,
        groups: u.groups ?? [],
      };
    },
  };
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:28em;margin:2em auto}input,button{display:block;margin:.4em 0}</style>
</head><body><h1>${esc(title)}</h1>${body}</body></html>`;

// --- device flow pages (the `form` argument carries the xsrf hidden input; keep it) ---
const CODE_ERRORS = {
  NoCodeError: 'Please enter a code.',
  NotFoundError: 'The code you entered is incorrect. Try again.',
  ExpiredError: 'The code you entered has expired.',
  AlreadyUsedError: 'The code you entered has already been used.',
  AbortedError: 'The sign-in request was aborted.',
};
async function userCodeInputSource(ctx, form, _out, err) {
  const msg = err
    ? `<p class="error" id="error">${esc(CODE_ERRORS[err.name] || `Error: ${err.message || err.name}`)}</p>`
    : '<p>Enter the code displayed on your device.</p>';
  ctx.body = page('Device sign-in', `${msg}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`);
}

async function userCodeConfirmSource(ctx, form, client, _deviceInfo, userCode) {
  ctx.body = page('Confirm device', `<p>Client <strong>${esc(client.clientName || client.clientId)}</strong>
wants to sign in. Check that your device shows <code id="user_code">${esc(userCode)}</code>.</p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort (deny)</button>`);
}

async function successSource(ctx) {
  ctx.body = page('Sign-in success', '<p id="success">Your device is signed in. You can close this page.</p>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', Object.entries(out).map(([k, v]) => `<pre><b>${esc(k)}</b>: ${esc(v)}</pre>`).join(''));
}

// --- provider setup ---
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `rs256-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };

const client = {
  client_id: opt['client-id'],
  client_name: 'Gatehouse',
  application_type: 'native', // loopback redirect URIs may use any port (RFC 8252)
  grant_types: [
    ...(opt['no-device-flow'] ? [] : ['urn:ietf:params:oauth:grant-type:device_code']),
    'refresh_token',
    'authorization_code',
  ],
  response_types: ['code'],
  redirect_uris: opt['redirect-uri'],
  ...(opt['client-secret']
    ? { client_secret: opt['client-secret'], token_endpoint_auth_method: 'client_secret_basic' } // _post is accepted too
    : { token_endpoint_auth_method: 'none' }),
};

const configuration = {
  clients: [client],
  findAccount,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  conformIdTokenClaims: false, // put the scope's claims (email, groups) into the ID token
  ttl: {
    DeviceCode: Number(opt['device-code-ttl']),
    Interaction: 600,
    Session: 14 * 86400,
    Grant: 14 * 86400,
    AccessToken: 3600,
    IdToken: 3600,
    RefreshToken: 14 * 86400,
  },
  features: {
    devInteractions: { enabled: false }, // its pages load web fonts, which fail offline
    deviceFlow: { enabled: !opt['no-device-flow'], userCodeInputSource, userCodeConfirmSource, successSource },
    rpInitiatedLogout: { enabled: false },
  },
  renderError,
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
};

// --- login + consent pages (the interactions.url target) ---
function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { data += c; if (data.length > 1e5) req.destroy(); });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(data))));
    req.on('error', reject);
  });
}

function sendHtml(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function interaction(provider, req, res, path) {
  const [, uid, action] = path.split('/').slice(1); // /interaction/:uid[/:action]
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction uid mismatch');
  const { prompt, params } = details;

  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') {
      return sendHtml(res, 200, page('Sign in', `<form method="post" action="/interaction/${esc(uid)}/login">
<input type="text" name="login" placeholder="email" autofocus>
<input type="password" name="password" placeholder="password">
<button type="submit">Sign in</button></form>`));
    }
    const scopes = [...new Set(String(params.scope || '').split(' ').filter(Boolean))];
    return sendHtml(res, 200, page('Authorize', `<p>Client <strong>${esc(params.client_id)}</strong> requests: ${esc(scopes.join(', '))}</p>
<form method="post" action="/interaction/${esc(uid)}/confirm"><button type="submit">Allow</button></form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Deny</button></form>`));
  }
  if (req.method !== 'POST') return sendHtml(res, 405, page('Error', '<p>method not allowed</p>'));
  if ((action === 'login' || action === 'confirm') && (action === 'login') !== (prompt.name === 'login')) {
    return sendHtml(res, 400, page('Error', `<p>this interaction expects the ${esc(prompt.name)} step</p>`));
  }

  if (action === 'login') {
    const form = await readForm(req);
    const u = users.find((x) => x.email === form.login || x.sub === form.login);
    if (!u || u.password !== form.password) {
      return sendHtml(res, 401, page('Sign in', `<p class="error">Invalid email or password.</p>
<form method="post" action="/interaction/${esc(uid)}/login">
<input type="text" name="login" value="${esc(form.login || '')}"><input type="password" name="password">
<button type="submit">Sign in</button></form>`));
    }
    return provider.interactionFinished(req, res, { login: { accountId: u.sub } }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, s] of Object.entries(d.missingResourceScopes || {})) grant.addResourceScope(indicator, s.join(' '));
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (action === 'abort') {
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User denied' }, { mergeWithLastSubmission: false });
  }
  return sendHtml(res, 404, page('Error', '<p>not found</p>'));
}

// --- HTTP server ---
let handler = null;
const server = http.createServer((req, res) => handler(req, res));
server.listen(Number(opt.port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  // oidc-provider omits `interval` from the device authorization response (clients
  // then must assume 5 s, RFC 8628 3.2) and never answers slow_down; advertise ours.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && ctx.body) {
      ctx.body = { ...ctx.body, interval: Number(opt.interval) };
    }
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error:', err));
  const callback = provider.callback();
  handler = (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    if (!path.startsWith('/interaction/')) return callback(req, res);
    interaction(provider, req, res, path).catch((err) => {
      const msg = [err.message, err.error_description].filter(Boolean).join(': ');
      console.error('interaction error:', msg);
      if (!res.headersSent) sendHtml(res, 400, page('Error', `<pre>${esc(msg)}</pre>`));
    });
  };
  process.stdout.write(`listening on ${issuer}\n`);
});
