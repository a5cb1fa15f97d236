// Users (admin): every account, one page at a time, with whether it is active; change a role, deactivate (signs
// the account out everywhere at once) or reactivate.
import * as api from './api.js';
import { h, clear, fmtTime, toast } from './dom.js';

const LIMIT = 20;

export async function render(main, params, signal) {
  document.title = 'Users · Vigil';
  main.append(h('h1', {}, 'Users'));
  if (!api.can('admin')) {
    main.append(h('p', {}, 'Managing users takes the admin role.'));
    return;
  }
  const summary = h('p', { role: 'status' });
  const table = h('div', { id: 'user-table' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  main.append(h('section', { class: 'card' }, summary, table, pager));
  let page = Number(params.get('page')) || 1;

  const load = async () => {
    const r = await api.get(`/api/users${api.query({ page, limit: LIMIT })}`, { signal });
    const total = Number(r?.total) || 0;
    const pages = Math.max(1, Math.ceil(total / LIMIT));
    summary.textContent = `${total} account${total === 1 ? '' : 's'}; page ${page} of ${pages}.`;
    clear(table);
    const me = api.current()?.user?.id;
    table.append(h('table', {},
      h('thead', {}, h('tr', {}, ['User', 'Email', 'Role', 'Verified', 'Active', 'Created', 'Last sign-in', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, (r?.data || []).map((u) => {
        const role = h('select', { 'aria-label': `Role of ${u.username}`, disabled: u.id === me },
          ['viewer', 'analyst', 'admin'].map((x) => h('option', { value: x }, x)));
        role.value = u.role;
        role.addEventListener('change', async () => {
          try {
            await api.put(`/api/users/${encodeURIComponent(u.id)}`, { role: role.value });
            toast(`${u.username} is now ${role.value}.`);
          } catch (x) { toast(`Not changed: ${x.message}`, 'error'); role.value = u.role; }
        });
        const active = u.is_active !== false;
        const toggle = h('button', { type: 'button', class: active ? 'danger' : 'secondary', disabled: u.id === me,
          'aria-label': `${active ? 'Deactivate' : 'Reactivate'} ${u.username}` },
          active ? 'Deactivate' : 'Reactivate');
        toggle.addEventListener('click', async () => {
          if (active && !window.confirm(`Deactivate ${u.username}? Their sessions end at once.`)) return;
          try {
            await api.put(`/api/users/${encodeURIComponent(u.id)}`, { is_active: !active });
            toast(`${u.username} ${active ? 'deactivated' : 'reactivated'}.`);
          } catch (x) { toast(`Not changed: ${x.message}`, 'error'); }
          await load();
        });
        return h('tr', { 'data-user': u.username, class: active ? '' : 'inactive' }, h('td', {}, u.username, u.full_name ? h('div', { class: 'small muted' }, u.full_name) : null),
          h('td', {}, u.email), h('td', {}, role), h('td', {}, u.is_verified ? 'yes' : 'no'),
          h('td', { class: 'active' }, active ? 'yes' : h('strong', {}, 'no')),
          h('td', {}, fmtTime(u.created_at)), h('td', {}, fmtTime(u.last_login)), h('td', {}, toggle));
      }))));
    clear(pager);
    pager.append(
      h('button', { type: 'button', class: 'secondary', disabled: page <= 1, onclick: () => { page -= 1; load(); } }, '← Previous'),
      h('span', {}, ` ${page} / ${pages} `),
      h('button', { type: 'button', class: 'secondary', disabled: page >= pages, onclick: () => { page += 1; load(); } }, 'Next →'));
  };
  await load();
}
