// Completes (or denies) a pending device login the way a browser would.
// Usage: node approve.mjs --issuer URL --user-code CODE --login EMAIL --password PW [--deny] [--verbose]
//    or: node approve.mjs --issuer URL --authorize AUTH_URL --login EMAIL --password PW [--deny]
// The second form signs in through an authorization-code request and prints
// the redirect back to the client (`callback URL`) instead of following it.
// Exit 0 on success (or on a recorded denial with --deny); 1 with a message otherwise.
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'user-code': { type: 'string' },
    authorize: { type: 'string' },
    login: { type: 'string', default: 'alice@example.com' },
    password: { type: 'string', default: 'alice-pw' },
    deny: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});
if (!opt.issuer || !(opt['user-code'] || opt.authorize)) fail('usage: approve.mjs --issuer URL --user-code CODE --login EMAIL --password PW [--deny]');

function fail(msg) {
  console.error(`approve: ${msg}`);
  process.exit(1);
}
const log = (...a) => opt.verbose && console.error('approve:', ...a);

// Minimal cookie jar: name -> {value, path}. oidc-provider scopes its
// interaction cookies by path (/interaction/UID, /device/resume/UID), so paths matter.
const jar = new Map();
function storeCookies(res, url) {
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    let path = url.pathname.replace(/\/[^/]*$/, '') || '/';
    let expired = value === '';
    for (const a of attrs) {
      const [k, v = ''] = a.split('=');
      if (k.toLowerCase() === 'path') path = v;
      if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      if (k.toLowerCase() === 'expires' && Date.parse(v) <= Date.now()) expired = true;
    }
    log(`  set-cookie ${name} path=${path}${expired ? ' (deleted)' : ''}`);
    const key = `${name}\0${path}`;
    if (expired) jar.delete(key); else jar.set(key, { name, value, path });
  }
}
function cookieHeader(url) {
  const p = url.pathname;
  return [...jar.values()]
    .filter((c) => p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
    .map((c) => `${c.name}=${c.value}`).join('; ');
}

// One request; follows redirects (303/302 -> GET) manually so cookies are kept.
async function request(method, urlStr, form) {
  let url = new URL(urlStr, opt.issuer);
  let body = form ? new URLSearchParams(form).toString() : undefined;
  for (let hops = 0; hops < 10; hops += 1) {
    const headers = { cookie: cookieHeader(url), accept: 'text/html' };
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    log(method, url.pathname, body ?? '', `[cookies: ${headers.cookie.replace(/=[^;]*/g, '')}]`);
    const res = await fetch(url, { method, headers, body, redirect: 'manual' });
    storeCookies(res, url);
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get('location'), url);
      // Back to the client: a browser would follow; we report it.
      if (url.origin !== new URL(opt.issuer).origin) return { status: res.status, url, html: '', left: true };
      method = 'GET';
      body = undefined;
      continue;
    }
    return { status: res.status, url, html: await res.text() };
  }
  fail('too many redirects');
}

// Fields of the form whose id or action matches `which` (hidden inputs only).
function formFields(html, which) {
  const forms = html.match(/<form\b[\s\S]*?<\/form>/g) || [];
  const form = forms.find((f) => f.includes(which));
  if (!form) return undefined;
  const action = (form.match(/action="([^"]*)"/) || [])[1];
  const fields = {};
  for (const m of form.matchAll(/<input\b[^>]*type="hidden"[^>]*>/g)) {
    const name = (m[0].match(/name="([^"]*)"/) || [])[1];
    const value = (m[0].match(/value="([^"]*)"/) || [])[1] ?? '';
    if (name) fields[name] = value.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(n)).replace(/&amp;/g, '&');
  }
  return { action: action?.replace(/&amp;/g, '&'), fields };
}
const snippet = (r) => `HTTP ${r.status} ${r.url.pathname}: ${r.html.replace(/<style[\s\S]*?<\/style>|<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200)}`;

// Interaction pages: login, then consent, until `done(r)` says so.
async function interact(r, done) {
  for (let step = 0; step < 6; step += 1) {
    if (done(r)) return r;
    const m = r.url.pathname.match(/^\/interaction\/([^/]+)$/);
    if (r.status !== 200 || !m) fail(`unexpected page: ${snippet(r)}`);
    if (r.html.includes(`/interaction/${m[1]}/login`)) {
      r = await request('POST', `/interaction/${m[1]}/login`, { login: opt.login, password: opt.password });
      if (r.status === 401) fail(`login rejected for ${opt.login}`);
    } else if (r.html.includes(`/interaction/${m[1]}/confirm`)) {
      const action = opt.deny ? 'abort' : 'confirm';
      r = await request('POST', `/interaction/${m[1]}/${action}`, {});
    } else {
      fail(`unknown interaction page: ${snippet(r)}`);
    }
  }
  fail(`flow did not finish: ${snippet(r)}`);
}

if (opt.authorize) {
  const r = await interact(await request('GET', opt.authorize), (x) => x.left);
  console.log(`callback ${r.url.href}`);
  process.exit(0);
}

// 1. GET /device?user_code=... -> auto-submit form carrying xsrf + user_code.
let r = await request('GET', `/device?user_code=${encodeURIComponent(opt['user-code'])}`);
let f = formFields(r.html, 'name="xsrf"');
if (r.status !== 200 || !f) fail(`unexpected /device page: ${snippet(r)}`);
// 2. POST /device {xsrf, user_code} -> confirm page (form op.deviceConfirmForm).
r = await request('POST', f.action, f.fields);
f = formFields(r.html, 'op.deviceConfirmForm');
if (!f) fail(`user code not accepted: ${snippet(r)}`);
// 3. POST /device {xsrf, user_code, confirm=yes} (+ abort=yes to deny).
if (opt.deny) {
  r = await request('POST', f.action, { ...f.fields, abort: 'yes' });
  if (!/aborted/i.test(r.html)) fail(`abort not acknowledged: ${snippet(r)}`);
  console.log('approve: denied');
  process.exit(0);
}
r = await request('POST', f.action, f.fields);
// 4. Interaction pages: login, then consent, until the device success page.
await interact(r, (x) => x.html.includes('id="success"'));
console.log(`approve: approved as ${opt.login}`);
process.exit(0);
