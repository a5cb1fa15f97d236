// The console's shell: sign-in, the hash router (#/streams, #/streams/<name>, #/anomalies, #/alerts, #/users,
// #/maxidom)
// and the header. Each page module exports `render(main, params, signal)`; `signal` aborts when the page is left, which
// stops its polling and its event stream.
import * as api from './api.js';
import { h, clear, toast, field } from './dom.js';
import * as overview from './overview.js';
import * as stream from './stream.js';
import * as anomalies from './anomalies.js';
import * as alerts from './alerts.js';
import * as users from './users.js';
import * as maxidom from './maxidom.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let page = null;

function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : 'streams';
  const [path, qs] = raw.split('?');
  const parts = path.split('/').map(decodeURIComponent);
  return { parts, params: new URLSearchParams(qs || '') };
}

// `moved`: the user navigated (not the first load), so focus goes to the new page for keyboard and screen-reader
// users instead of staying on the link they left.
async function route(moved = false) {
  page?.abort();
  page = new AbortController();
  const signal = page.signal;
  const session = api.current();
  clear(main);
  if (!session) {
    top.hidden = true;
    renderLogin();
    return;
  }
  top.hidden = false;
  document.getElementById('who').textContent = `${session.user?.username ?? ''} · ${session.user?.role ?? ''}`;
  const { parts, params } = parseHash();
  // The Users page is for admins (the API refuses others anyway).
  top.querySelector('[data-nav="users"]').hidden = session.user?.role !== 'admin';
  top.querySelector('[data-nav="maxidom"]').hidden = session.user?.role !== 'admin';
  for (const a of top.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === parts[0]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    if (parts[0] === 'streams' && parts[1]) await stream.render(main, parts[1], params, signal);
    else if (parts[0] === 'anomalies') await anomalies.render(main, params, signal);
    else if (parts[0] === 'alerts') await alerts.render(main, params, signal);
    else if (parts[0] === 'users') await users.render(main, params, signal);
    else if (parts[0] === 'maxidom') await maxidom.render(main, params, signal);
    else await overview.render(main, params, signal);
    if (moved && !signal.aborted) main.focus({ preventScroll: true });
  } catch (e) {
    if (signal.aborted) return;
    if (e?.status === 401) return; // the session listener shows the sign-in
    main.append(h('p', { class: 'error', role: 'alert' }, `Could not load this page: ${e.message}`));
  }
}

function renderLogin() {
  document.title = 'Sign in · Vigil';
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('p', { class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'login card', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Vigil console'),
    h('p', { class: 'muted' }, 'Sign in with your Vigil account.'),
    field('Username or email', user), field('Password', pass), err, button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    button.disabled = true;
    try {
      await api.login(user.value.trim(), pass.value);
      if (!location.hash.startsWith('#/')) location.hash = '#/streams';
      await route();
    } catch (x) {
      err.textContent = x.status === 401 ? 'Wrong username or password.' : x.message;
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  user.focus();
}

document.getElementById('logout').addEventListener('click', async () => {
  await api.logout();
  toast('Signed out.');
});

api.onSession((s) => { if (!s) route(); });
window.addEventListener('hashchange', () => { if (location.hash.startsWith('#/') || !location.hash) route(true); });
route();
