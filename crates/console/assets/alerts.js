// Alert configurations of the caller (an admin sees everyone's): create, edit the threshold and channels,
// enable/disable, delete; and the recent webhook deliveries of those configs with their outcome.
import * as api from './api.js';
import { h, clear, fmtNum, fmtTime, toast, field } from './dom.js';

function channelsOf(text) {
  return text.split(/[\s,]+/).map((c) => c.trim()).filter(Boolean);
}

export async function render(main, _params, signal) {
  document.title = 'Alerts · Vigil';
  const list = h('div', { id: 'alert-list' });
  main.append(h('h1', {}, 'Alerts'),
    h('p', { class: 'muted' }, 'An active configuration fires when an anomaly\'s score (0–1) reaches its threshold: `webhook:<url>` posts the anomaly, `websocket` pushes it to your open stream sockets.'));
  if (api.can('analyst')) main.append(createForm(() => load()));
  const deliveries = h('section', { class: 'card', id: 'deliveries', 'aria-labelledby': 'deliveries-title' });
  main.append(list, deliveries);

  const load = async () => {
    const rows = await api.get('/api/alerts', { signal });
    clear(list);
    if (!Array.isArray(rows) || !rows.length) {
      list.append(h('p', {}, 'No alert configuration yet.'));
      return;
    }
    list.append(h('table', {},
      h('thead', {}, h('tr', {}, ['Threshold', 'Channels', 'Active', 'Owner', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((a) => row(a, load)))));
  };
  await load();
  if (api.can('analyst')) await renderDeliveries(deliveries, signal);
}

const OUTCOME_CLASS = { delivered: 'ok', failed: 'error', refused: 'error', abandoned: 'muted' };

// The newest webhook deliveries (one row per delivery, all its attempts), refreshed on demand.
async function renderDeliveries(box, signal) {
  const body = h('div', { id: 'delivery-table' });
  const refresh = h('button', { type: 'button', class: 'secondary' }, 'Refresh');
  const load = async () => {
    const rows = await api.get(`/api/alerts/deliveries${api.query({ limit: 50 })}`, { signal });
    clear(body);
    if (!Array.isArray(rows) || !rows.length) {
      body.append(h('p', {}, 'No webhook delivery yet.'));
      return;
    }
    body.append(h('table', {},
      h('caption', {}, `The newest ${rows.length} deliveries`),
      h('thead', {}, h('tr', {}, ['Finished', 'Outcome', 'Attempts', 'Last answer', 'Webhook', 'Anomaly'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((d) => h('tr', { 'data-outcome': d.outcome },
        h('td', {}, fmtTime(d.finished_at)),
        h('td', {}, h('span', { class: OUTCOME_CLASS[d.outcome] || '' }, d.outcome)),
        h('td', { class: 'num' }, String(d.attempts)),
        h('td', {}, d.last_status ? String(d.last_status) : (d.error || '—')),
        h('td', { class: 'small' }, d.target),
        h('td', { class: 'small', title: d.anomaly_id }, d.anomaly_id.slice(0, 8)))))));
  };
  refresh.addEventListener('click', () => { load().catch((x) => toast(x.message, 'error')); });
  box.append(h('div', { class: 'row' }, h('h2', { id: 'deliveries-title' }, 'Recent deliveries'), refresh), body);
  await load();
}

function row(a, reload) {
  const threshold = h('input', { type: 'number', min: 0, max: 1, step: 'any', value: a.threshold, 'aria-label': 'Threshold' });
  const channels = h('input', { value: (a.notification_channels || []).join(', '), 'aria-label': 'Channels' });
  const active = h('input', { type: 'checkbox', checked: !!a.is_active, 'aria-label': 'Active' });
  const save = async () => {
    try {
      await api.put(`/api/alerts/${encodeURIComponent(a.id)}`, {
        threshold: Number(threshold.value), notification_channels: channelsOf(channels.value), is_active: active.checked,
      });
      toast('Alert saved.');
    } catch (x) { toast(`Not saved: ${x.message}`, 'error'); }
    reload();
  };
  const remove = async () => {
    if (!window.confirm('Delete this alert configuration?')) return;
    try { await api.del(`/api/alerts/${encodeURIComponent(a.id)}`); toast('Alert deleted.'); } catch (x) { toast(x.message, 'error'); }
    reload();
  };
  return h('tr', {}, h('td', {}, threshold), h('td', {}, channels), h('td', {}, active),
    h('td', { class: 'small' }, a.user_id === api.current()?.user?.id ? 'you' : a.user_id),
    h('td', {}, h('button', { type: 'button', onclick: save }, 'Save'), ' ',
      h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete')));
}

function createForm(done) {
  const threshold = h('input', { type: 'number', min: 0, max: 1, step: 'any', value: '0.8', required: true });
  const channels = h('input', { placeholder: 'websocket, webhook:https://…', value: 'websocket', required: true });
  const active = h('input', { type: 'checkbox', checked: true });
  const form = h('form', { class: 'card inline-form', 'aria-label': 'New alert' },
    field('Threshold (0–1)', threshold), field('Channels', channels), field('Active', active),
    h('button', { type: 'submit' }, 'Create alert'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api.post('/api/alerts', { threshold: Number(threshold.value), notification_channels: channelsOf(channels.value), is_active: active.checked });
      toast(`Alert created (threshold ${fmtNum(Number(threshold.value), 2)}).`);
      done();
    } catch (x) { toast(`Not created: ${x.message}`, 'error'); }
  });
  return form;
}
