// The anomaly log: filters (source, time range, minimum score, risk), paging, the stats as charts (timeline,
// per source, per risk level) over the same filters, and CSV/JSON export downloaded with the bearer header.
import * as api from './api.js';
import { h, clear, fmtTime, fmtNum, riskClass, toast, field } from './dom.js';
import { bars } from './charts.js';

const RISKS = ['Low', 'Medium', 'High', 'Critical'];
const LIMIT = 20;

// datetime-local gives local time without zone; the API takes ISO 8601, so convert to UTC.
function toIso(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

export async function render(main, params, signal) {
  document.title = 'Anomaly log · Vigil';
  const f = {
    source: h('select', { name: 'source' }, h('option', { value: '' }, 'All sources')),
    start: h('input', { type: 'datetime-local', name: 'start', value: params.get('start') || '' }),
    end: h('input', { type: 'datetime-local', name: 'end', value: params.get('end') || '' }),
    min: h('input', { type: 'number', name: 'min_score', min: 0, max: 100, step: 'any', placeholder: '0–100', value: params.get('min') || '' }),
    risk: h('select', { name: 'risk_level' }, h('option', { value: '' }, 'Any risk'), RISKS.map((r) => h('option', { value: r }, r))),
  };
  f.risk.value = params.get('risk') || '';
  const form = h('form', { class: 'filters card', 'aria-label': 'Filters' },
    field('Source', f.source), field('From', f.start), field('To', f.end), field('Minimum score', f.min), field('Risk', f.risk),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Apply'),
      h('button', { type: 'reset', class: 'secondary' }, 'Clear')));
  const charts = h('div', { class: 'grid3', id: 'stats' });
  const summary = h('p', { role: 'status', id: 'log-summary' });
  const table = h('div', { id: 'log-table' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const exports = h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'secondary', id: 'export-csv', onclick: () => exportAs('csv') }, 'Export CSV'),
    h('button', { type: 'button', class: 'secondary', id: 'export-json', onclick: () => exportAs('json') }, 'Export JSON'));
  main.append(h('h1', {}, 'Anomaly log'), form, charts,
    h('section', { class: 'card', 'aria-label': 'Anomalies' }, h('div', { class: 'row' }, summary, exports), table, pager));

  let page = Number(params.get('page')) || 1;
  const source = params.get('source') || '';

  const filters = () => ({
    source: f.source.value,
    start_date: toIso(f.start.value),
    end_date: toIso(f.end.value),
    min_score: f.min.value === '' ? '' : String(Number(f.min.value) / 100),
    risk_level: f.risk.value,
  });

  async function exportAs(format) {
    try {
      const { name, bytes } = await api.download(`/api/anomalies/export${api.query({ ...filters(), format })}`, `anomalies.${format}`);
      toast(`Downloaded ${name} (${bytes} bytes).`);
    } catch (x) {
      toast(`Export failed: ${x.message}`, 'error');
    }
  }

  const load = async () => {
    const q = filters();
    const [list, stats] = await Promise.all([
      api.get(`/api/anomalies${api.query({ ...q, page, limit: LIMIT })}`, { signal }),
      api.get(`/api/anomalies/stats${api.query(q)}`, { signal }),
    ]);
    // Sources for the filter come from the stats; options are only added, so choosing one keeps the others listed.
    const known = new Set([...f.source.options].map((o) => o.value));
    for (const s of Object.keys(stats?.by_source || {})) {
      if (!known.has(s)) f.source.append(h('option', { value: s }, s));
    }
    clear(charts);
    const bucket = Number(stats?.bucket_seconds) || 0;
    // Bucket labels: the time of day for buckets under a day, the date otherwise (full time in each bar's title).
    const label = (iso) => {
      const d = new Date(iso);
      if (Number.isNaN(d.getTime())) return String(iso);
      return bucket >= 86400 ? d.toLocaleDateString() : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    };
    const timeline = (stats?.timeline || []).map((b) => [label(b.bucket), Number(b.count) || 0]);
    charts.append(
      h('figure', { class: 'card' }, bars(timeline, { label: `Anomalies over time, ${timeline.length} buckets` }),
        h('figcaption', {}, `Over time${bucket ? ` (buckets of ${bucket >= 3600 ? `${bucket / 3600} h` : `${bucket / 60} min`})` : ''}`)),
      h('figure', { class: 'card' }, bars(Object.entries(stats?.by_source || {}).map(([k, v]) => [k, v]),
        { label: 'Anomalies per source', onBar: (s) => { f.source.value = s; page = 1; load(); } }), h('figcaption', {}, 'Per source')),
      h('figure', { class: 'card' }, bars(RISKS.map((r) => [r, stats?.severity_distribution?.[r] ?? 0, `risk-${r.toLowerCase()}`]),
        { label: 'Anomalies per risk level' }), h('figcaption', {}, 'Per risk level')));

    const total = Number(list?.total) || 0;
    const pages = Math.max(1, Math.ceil(total / LIMIT));
    summary.textContent = `${total} anomal${total === 1 ? 'y' : 'ies'} match; page ${page} of ${pages}.`;
    clear(table);
    const rows = (list?.data || []).map((a) => h('tr', {},
      h('td', {}, fmtTime(a.timestamp)),
      h('td', {}, h('a', { href: `#/streams/${encodeURIComponent(a.source_type)}?anomaly=${encodeURIComponent(a.id)}` }, a.source_type)),
      h('td', { class: 'num' }, fmtNum(a.anomaly_score * 100, 1)),
      h('td', {}, h('span', { class: riskClass(a.risk_level) }, a.risk_level)),
      h('td', { class: 'num' }, `${a.betti_h0}/${a.betti_h1}/${a.betti_h2}`),
      h('td', { class: 'num' }, fmtNum(a.event_data?.value, 3))));
    table.append(h('table', { id: 'anomaly-table' },
      h('thead', {}, h('tr', {}, ['Time', 'Source', 'Score', 'Risk', 'Betti H0/H1/H2', 'Value'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)));
    clear(pager);
    pager.append(
      h('button', { type: 'button', class: 'secondary', disabled: page <= 1, onclick: () => { page -= 1; load(); } }, '← Newer'),
      h('span', {}, ` ${page} / ${pages} `),
      h('button', { type: 'button', class: 'secondary', disabled: page >= pages, onclick: () => { page += 1; load(); } }, 'Older →'));
  };

  form.addEventListener('submit', (e) => { e.preventDefault(); page = 1; load().catch((x) => toast(x.message, 'error')); });
  form.addEventListener('reset', () => { setTimeout(() => { page = 1; load().catch((x) => toast(x.message, 'error')); }, 0); });
  if (source) f.source.append(h('option', { value: source }, source));
  f.source.value = source;
  await load();
}
