// MaxiDOM (admin): every enrolled behavioural profile with its readiness progress, model version and last
// training, lockouts, and the current run's recent scores and anomaly rate (GET /api/maxidom/profiles).
import * as api from './api.js';
import { h, clear, fmtTime, fmtNum, ago } from './dom.js';
import { s } from './charts.js';

const LIMIT = 25;

// The run's payload scores as tiny bars (0–1, flagged ones below α in the alarm colour).
function scoreBars(scores, alpha, id) {
  const w = 110;
  const hgt = 26;
  const n = Math.max(scores.length, 1);
  const bw = w / n;
  const svg = s('svg', { viewBox: `0 0 ${w} ${hgt}`, class: 'chart runbars', role: 'img',
    'aria-label': scores.length ? `Scores of the last ${scores.length} payloads of ${id}: ${scores.map((v) => v.toFixed(2)).join(', ')}` : `No scores yet for ${id}` });
  scores.forEach((v, i) => {
    const bh = Math.max(1, v * (hgt - 2));
    svg.append(s('rect', { x: i * bw + 1, y: hgt - bh, width: Math.max(bw - 2, 1), height: bh,
      class: v < alpha ? 'col flagged' : 'col' }, s('title', {}, v.toFixed(3))));
  });
  return svg;
}

function progressCell(p) {
  const t = p?.total_samples || { current: 0, required: 1 };
  const pct = Math.min(100, Math.round((100 * t.current) / Math.max(t.required, 1)));
  const detail = `mouse ${p?.mouse_samples?.current ?? 0}/${p?.mouse_samples?.required ?? '?'}, keyboard ${p?.keyboard_samples?.current ?? 0}/${p?.keyboard_samples?.required ?? '?'}, digraph ${p?.digraph_samples?.current ?? 0}/${p?.digraph_samples?.required ?? '?'}`;
  return h('td', {},
    h('progress', { max: 100, value: pct, 'aria-label': `Readiness ${pct} %` }),
    h('div', { class: 'small' }, p?.is_ready ? 'ready' : `${t.current}/${t.required} samples`),
    h('div', { class: 'small muted' }, detail));
}

export async function render(main, params, signal) {
  document.title = 'MaxiDOM · Vigil';
  main.append(h('h1', {}, 'MaxiDOM profiles'));
  if (!api.can('admin')) {
    main.append(h('p', {}, 'The MaxiDOM profiles are for admins.'));
    return;
  }
  const summary = h('p', { role: 'status', id: 'maxidom-summary' });
  const table = h('div', { id: 'maxidom-table' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  main.append(h('p', { class: 'muted' }, 'Behavioural profiles of the MaxiDOM browser extension. Recent scores are the payloads of each profile\'s current run (each payload\'s own calibrated score); the anomaly rate is the share of them below the threshold.'),
    h('section', { class: 'card' }, summary, table, pager));
  let page = Number(params.get('page')) || 1;

  const load = async () => {
    const r = await api.get(`/api/maxidom/profiles${api.query({ page, limit: LIMIT })}`, { signal });
    const total = Number(r?.total) || 0;
    const pages = Math.max(1, Math.ceil(total / LIMIT));
    const rows = Array.isArray(r?.data) ? r.data : [];
    const alpha = Number(r?.alpha) || 0.05;
    summary.textContent = `${total} profile${total === 1 ? '' : 's'}; ${rows.filter((p) => p.model_active).length} with an active model on this page; threshold ${alpha}.`;
    clear(table);
    if (!rows.length) {
      table.append(h('p', {}, 'No profile yet: profiles appear when the extension enrolls.'));
    } else {
      table.append(h('table', {},
        h('thead', {}, h('tr', {}, ['Profile', 'Readiness', 'Model', 'Recent scores', 'Anomaly rate', 'Lockout']
          .map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows.map((p) => h('tr', { 'data-profile': p.profile_id },
          h('td', {}, h('code', { class: 'small' }, p.profile_id),
            h('div', { class: 'small muted' }, `${p.enrolled ? 'enrolled' : 'no password'} · created ${fmtTime(p.created_at)} · ${p.vectors_stored} vectors`)),
          progressCell(p.progress),
          h('td', { class: 'model' }, p.model_active ? `v${p.model_version}` : 'none',
            h('div', { class: 'small muted' }, p.model_trained_at ? `trained ${ago(p.model_trained_at)}` : 'not trained'),
            p.training_in_progress ? h('div', { class: 'small' }, 'training…') : null,
            h('div', { class: 'small muted' }, `pool ${p.pool_size}`)),
          h('td', {}, scoreBars(p.recent_scores || [], alpha, p.profile_id),
            h('div', { class: 'small muted' }, p.last_scored_at ? `last ${ago(p.last_scored_at)}` : 'never scored')),
          h('td', { class: 'num rate' }, p.anomaly_rate === null || p.anomaly_rate === undefined ? '—' : `${fmtNum(p.anomaly_rate * 100, 0)} %`),
          h('td', { class: 'lock' }, p.locked_until ? h('span', { class: 'error' }, `locked until ${fmtTime(p.locked_until)}`)
            : (p.failed_attempts ? `${p.failed_attempts} failed` : 'none')))))));
    }
    clear(pager);
    pager.append(
      h('button', { type: 'button', class: 'secondary', disabled: page <= 1, onclick: () => { page -= 1; load(); } }, '← Previous'),
      h('span', {}, ` ${page} / ${pages} `),
      h('button', { type: 'button', class: 'secondary', disabled: page >= pages, onclick: () => { page += 1; load(); } }, 'Next →'));
  };
  await load();
}
