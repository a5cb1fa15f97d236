// The API client: the session (access + refresh tokens) lives in memory and sessionStorage (gone when the tab
// closes; never in a URL or a cookie), every call sends `Authorization: Bearer`, a 401 refreshes once.

const KEY = 'vigil.session';
let session = null;
try { session = JSON.parse(sessionStorage.getItem(KEY) || 'null'); } catch { session = null; }
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function save(s) {
  session = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  for (const f of listeners) f(s);
}

export function onSession(f) { listeners.add(f); }
export function current() { return session; }
export function role() { return session?.user?.role || 'viewer'; }
export function can(needed) {
  const rank = { viewer: 0, analyst: 1, admin: 2 };
  return (rank[role()] ?? 0) >= (rank[needed] ?? 9);
}

async function detailOf(r) {
  try {
    const body = await r.json();
    if (typeof body?.detail === 'string') return body.detail;
    return JSON.stringify(body?.detail ?? body);
  } catch {
    return `${r.status} ${r.statusText}`;
  }
}

export async function login(username, password) {
  const r = await fetch('/api/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!r.ok) throw new ApiError(r.status, await detailOf(r));
  const body = await r.json();
  save({ access: body.access_token, refresh: body.refresh_token, user: body.user });
  return body.user;
}

let refreshing = null;
async function refresh() {
  if (!session?.refresh) return false;
  refreshing ??= (async () => {
    try {
      const r = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token: session.refresh }),
      });
      if (!r.ok) return false;
      const body = await r.json();
      save({ access: body.access_token, refresh: body.refresh_token, user: body.user || session?.user });
      return true;
    } catch {
      return false;
    } finally {
      setTimeout(() => { refreshing = null; }, 0);
    }
  })();
  return refreshing;
}

// `opts.body` is sent as JSON; `opts.raw` returns the Response (for downloads and streams).
export async function request(path, opts = {}) {
  const send = () => {
    const headers = { Accept: 'application/json', ...(opts.headers || {}) };
    if (session?.access) headers.Authorization = `Bearer ${session.access}`;
    const init = { method: opts.method || 'GET', headers, signal: opts.signal };
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    return fetch(path, init);
  };
  let r = await send();
  if (r.status === 401 && session && await refresh()) r = await send();
  if (r.status === 401) {
    const detail = await detailOf(r);
    save(null);
    throw new ApiError(401, detail);
  }
  if (!r.ok) throw new ApiError(r.status, await detailOf(r));
  if (opts.raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

export const get = (path, opts) => request(path, opts);
export const put = (path, body) => request(path, { method: 'PUT', body });
export const post = (path, body) => request(path, { method: 'POST', body });
export const del = (path) => request(path, { method: 'DELETE' });

// Logout reaches the server (the access token is revoked at once, the refresh token too), then forgets both.
export async function logout() {
  try {
    if (session) await request('/api/auth/logout', { method: 'POST', body: { refresh_token: session.refresh } });
  } catch { /* signed out locally either way */ }
  save(null);
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// Server-Sent Events read with fetch (EventSource cannot send the Authorization header, and the token must not
// go in the URL). Calls `onEvent(name, data)` until `signal` aborts; reconnects after a drop, calling `onReconnect`
// (if given) once the new connection is open, since events may have been missed in between.
export async function sse(path, onEvent, signal, onReconnect) {
  let first = true;
  while (!signal.aborted) {
    try {
      const r = await request(path, { raw: true, signal, headers: { Accept: 'text/event-stream' } });
      if (!first && onReconnect) onReconnect();
      first = false;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length) onEvent(name, data.join('\n'));
        }
      }
    } catch (e) {
      if (signal.aborted || e?.status === 401) return;
    }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

// Downloads a protected file: fetch with the bearer header, then a Blob URL (the token never appears in a link).
export async function download(path, fallbackName) {
  const r = await request(path, { raw: true, headers: { Accept: '*/*' } });
  const cd = r.headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/.exec(cd);
  const blob = await r.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = m ? m[1] : fallbackName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return { name: a.download, bytes: blob.size };
}
