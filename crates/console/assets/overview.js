// Streams overview: every stream's window as a sparkline, its calibration status, event rate and last anomaly.
// The window and counts come from GET /api/streams (polled: the broadcast carries anomalies only); anomalies
// arrive live over the SSE feed and update the cards at once.
import * as api from './api.js';
import { h, clear, ago, fmtNum, riskClass, scoreClass } from './dom.js';
import { sparkline } from './charts.js';

const POLL_MS = 2000;
const STATUS_TEXT = {
  buffering: 'Buffering: too few events to analyse',
  calibrating: 'Calibrating: analysed, not yet scored',
  live: 'Live: scored against its own history',
  unreadable: 'State from another version: starts over at its next event',
};

export async function render(main, _params, signal) {
  document.title = 'Streams · Vigil';
  const grid = h('div', { class: 'cards', id: 'stream-cards', 'aria-live': 'polite' });
  const note = h('p', { class: 'muted' });
  main.append(h('h1', {}, 'Streams'), note, grid);

  const last = new Map(); // stream → {ms, score, risk}
  const rates = new Map(); // stream → {events, at, rate}
  let streams = [];

  const lookupLast = async (name) => {
    try {
      const r = await api.get(`/api/anomalies${api.query({ source: name, limit: 1 })}`, { signal });
      const a = r?.data?.[0];
      if (a && !last.has(name)) last.set(name, { ms: Date.parse(a.timestamp), score: a.anomaly_score, risk: a.risk_level });
    } catch { /* shown as "none" */ }
  };

  const draw = () => {
    clear(grid);
    note.textContent = streams.length
      ? `${streams.length} stream${streams.length === 1 ? '' : 's'}; windows refresh every ${POLL_MS / 1000} s, anomalies as they happen.`
      : 'No stream has received events yet. Send some with POST /api/ingest (analysts) and they appear here.';
    for (const st of streams) {
      const a = last.get(st.stream);
      const rate = rates.get(st.stream)?.rate;
      grid.append(h('article', { class: 'card stream-card', 'data-stream': st.stream, 'data-status': st.status },
        h('h2', {}, h('a', { href: `#/streams/${encodeURIComponent(st.stream)}` }, st.stream)),
        sparkline(st.values || [], `Last ${st.values?.length ?? 0} values of ${st.stream}`),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Status'), h('dd', {}, h('span', { class: `badge status-${st.status}`, title: STATUS_TEXT[st.status] || '' }, st.status)),
          h('dt', {}, 'Score'), h('dd', { class: 'score' }, typeof st.score === 'number'
            ? h('span', { class: scoreClass(st.score), title: 'scores.total of the last analysed event (0–100)' }, fmtNum(st.score, 1))
            : '—'),
          h('dt', {}, 'Events'), h('dd', { class: 'events' }, String(st.events ?? 0)),
          h('dt', {}, 'Rate'), h('dd', {}, rate === undefined ? '—' : `${fmtNum(rate, 1)} /s`),
          h('dt', {}, 'Latest value'), h('dd', {}, fmtNum(st.values?.[st.values.length - 1], 3)),
          h('dt', {}, 'Last anomaly'), h('dd', { class: 'last-anomaly' }, a
            ? [h('span', { class: riskClass(a.risk) }, a.risk), ` ${fmtNum(a.score * 100, 0)} · ${ago(a.ms)}`]
            : 'none'),
          h('dt', {}, 'Threshold'), h('dd', {}, fmtNum(st.anomaly_threshold, 1)))));
    }
  };

  const poll = async () => {
    const now = Date.now();
    const fresh = await api.get('/api/streams', { signal });
    if (!Array.isArray(fresh)) return;
    const unseen = [];
    for (const st of fresh) {
      const prev = rates.get(st.stream);
      const events = Number(st.events) || 0;
      // Events per second between two polls, from the server's own counts.
      const rate = prev && now > prev.at ? Math.max(0, (events - prev.events) / ((now - prev.at) / 1000)) : undefined;
      rates.set(st.stream, { events, at: now, rate });
      if (!prev) unseen.push(st.stream);
    }
    // A stream's last anomaly is looked up once, when the stream first appears; the live feed keeps it current.
    await Promise.all(unseen.map(lookupLast));
    streams = fresh;
    draw();
  };

  await poll();
  const timer = setInterval(() => { poll().catch(() => {}); }, POLL_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
  api.sse('/api/realtime/stream', (name, data) => {
    if (name !== 'anomaly') return;
    try {
      const r = JSON.parse(data);
      const ms = Date.parse(r.timestamp);
      last.set(r.stream, { ms: Number.isNaN(ms) ? Date.now() : ms, score: r.anomaly_score, risk: r.security_analysis?.risk_level });
      draw();
    } catch { /* a message this version cannot read */ }
  }, signal);
}
