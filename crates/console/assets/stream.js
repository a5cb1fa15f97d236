// Stream detail: the live window with anomalies marked, the current window's persistence diagram, barcode and
// landscape, Betti numbers and component scores per event, the selected anomaly's topology, scores and MITRE
// ATT&CK mapping, and the stream's configuration (analysts edit; the server enforces roles and cost limits).
// Live data comes from one SSE connection: `/api/realtime/stream?stream=<name>` carries every analysis of this
// stream (and the anomaly broadcast); the page applies every message and redraws once per animation frame. An
// analysis made on another replica than the page's arrives compact (`compact: true`, no diagrams): the window's
// topology is then read from `/api/streams/<name>/analysis`, at most once a second.
import * as api from './api.js';
import { h, append, clear, fmtTime, fmtNum, riskClass, toast, field } from './dom.js';
import { series, multi, diagram, barcode, landscape } from './charts.js';

// Events kept for the per-event charts (the newest).
const HISTORY = 300;
// Least time between two reads of the window's topology while compact analyses arrive.
const TOPO_REFRESH_MS = 1000;

function analysisOf(a) {
  const r = a?.metadata?.analysis;
  return r && typeof r === 'object' ? r : null;
}

function valueOf(a) {
  const v = a?.event_data?.value;
  return typeof v === 'number' ? v : Number(v);
}

export async function render(main, name, params, signal) {
  document.title = `${name} · Vigil`;
  const status = h('p', { class: 'muted', id: 'stream-status', 'aria-live': 'off' });
  const windowBox = h('div', { class: 'chart-box', id: 'window-chart' });
  const currentTopo = h('div', { class: 'topo', id: 'current-topo' });
  const listBox = h('div', { id: 'anomaly-list' });
  const detail = h('section', { class: 'card', id: 'anomaly-detail', 'aria-labelledby': 'sel-title' });
  const trends = h('div', { class: 'grid2', id: 'trends' });
  const configBox = h('section', { class: 'card', id: 'config', 'aria-labelledby': 'cfg-title' });
  main.append(
    h('p', {}, h('a', { href: '#/streams' }, '← All streams')),
    h('h1', {}, `Stream ${name}`), status,
    h('section', { class: 'card', 'aria-labelledby': 'win-title' },
      h('h2', { id: 'win-title' }, 'Current window'), windowBox,
      h('p', { class: 'muted small' }, 'Circles: anomalies recorded in this window (select one for its topology).'),
      h('h3', {}, 'Topology of the current window'), currentTopo),
    h('section', { class: 'card', 'aria-labelledby': 'trend-title' },
      h('h2', { id: 'trend-title' }, 'Betti numbers and scores per event'),
      h('p', { class: 'muted small' }, `Every analysis of this stream as it arrives (the newest ${HISTORY}).`),
      trends),
    detail,
    h('section', { class: 'card', 'aria-labelledby': 'log-title' },
      h('h2', { id: 'log-title' }, 'Recorded anomalies'), listBox),
    configBox);

  let anomalies = [];
  let selected = params.get('anomaly');
  // The stream now: summary and window from GET /api/streams/{s}/analysis, then kept current by the feed.
  let win = null;
  let topo = null; // {persistence, betti_numbers, topology_features, window_size}
  const hist = []; // [{x, betti:{h0,h1,h2}, scores}]
  let seq = 0;
  let missed = 0;

  const loadAnomalies = async () => {
    const r = await api.get(`/api/anomalies${api.query({ source: name, limit: 100 })}`, { signal });
    anomalies = Array.isArray(r?.data) ? r.data : [];
  };

  const loadCurrent = async () => {
    try {
      const r = await api.get(`/api/streams/${encodeURIComponent(name)}/analysis`, { signal });
      win = { ...r, values: [...(r.values || [])], times: [...(r.times || [])] };
      topo = r.window || null;
    } catch (e) {
      if (e?.status !== 404) throw e;
      win = null;
      topo = null;
    }
  };

  const select = (id) => {
    selected = id;
    drawWindow();
    drawDetail();
    drawList();
  };

  const drawStatus = () => {
    status.textContent = win
      ? `${win.status} · ${win.events} events · score ${fmtNum(win.score, 1)} · threshold ${fmtNum(win.anomaly_threshold, 1)} · updated ${fmtTime(win.updated_at)}${missed ? ` · ${missed} updates missed` : ''}`
      : 'No events yet.';
  };

  const drawWindow = () => {
    clear(windowBox);
    if (!win) {
      windowBox.append(h('p', {}, 'This stream has no stored state yet.'));
      return;
    }
    const values = win.values || [];
    const times = win.times || [];
    const timed = values.length > 0 && times.every((t) => typeof t === 'number');
    const points = values.map((y, i) => ({ x: timed ? times[i] : i, y }));
    const lo = timed ? times[0] : null;
    const hi = timed ? times[times.length - 1] : null;
    const marks = timed ? anomalies
      .map((a) => ({ a, ms: Date.parse(a.timestamp) }))
      .filter(({ ms }) => ms >= lo && ms <= hi)
      .map(({ a, ms }) => ({ x: ms, y: valueOf(a), id: a.id, selected: a.id === selected,
        label: `Anomaly ${fmtTime(ms)}: score ${fmtNum(a.anomaly_score * 100, 0)}, ${a.risk_level}` })) : [];
    windowBox.append(series(points, {
      label: `The last ${values.length} values of ${name}${marks.length ? `, ${marks.length} anomalies marked` : ''}`,
      marks, onMark: (m) => select(m.id), xTime: timed,
    }));
  };

  const drawCurrentTopo = () => {
    clear(currentTopo);
    if (!topo?.persistence) {
      currentTopo.append(h('p', { class: 'muted' }, 'The window is still filling: its topology appears once the stream is analysed.'));
      return;
    }
    const b = topo.betti_numbers || {};
    currentTopo.append(
      h('figure', {}, diagram(topo.persistence), h('figcaption', {},
        `Persistence diagram of the current window (${topo.window_size} events; Betti ${b.h0}/${b.h1}/${b.h2})`)),
      h('figure', {}, barcode(topo.persistence), h('figcaption', {}, 'Barcode of the current window')),
      h('figure', {}, landscape(topo.topology_features?.landscape), h('figcaption', {},
        `H1 landscape · entropy ${fmtNum(topo.topology_features?.entropy, 3)}`)));
  };

  const drawTrends = () => {
    clear(trends);
    const pts = (f) => hist.map((p) => ({ x: p.x, y: f(p) }));
    trends.append(
      multi([
        { name: 'H0', cls: 'h0', points: pts((p) => p.betti.h0) },
        { name: 'H1', cls: 'h1', points: pts((p) => p.betti.h1) },
        { name: 'H2', cls: 'h2', points: pts((p) => p.betti.h2) },
      ], { label: `Betti numbers of the last ${hist.length} windows`, w: 420, xTime: false, dots: false, id: 'betti-trend' }),
      multi([
        { name: 'total', cls: 's-total', points: pts((p) => p.scores.total) },
        { name: 'betti', cls: 's-betti', points: pts((p) => p.scores.betti) },
        { name: 'entropy', cls: 's-entropy', points: pts((p) => p.scores.entropy) },
        { name: 'ml', cls: 's-ml', points: pts((p) => p.scores.ml) },
      ], { label: `Component scores of the last ${hist.length} windows`, w: 420, xTime: false, dots: false, id: 'score-trend' }));
  };

  const drawList = () => {
    clear(listBox);
    if (!anomalies.length) {
      listBox.append(h('p', {}, 'No anomaly recorded for this stream yet.'));
      return;
    }
    const rows = anomalies.slice(0, 20).map((a) => h('tr', { class: a.id === selected ? 'selected' : '' },
      h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => select(a.id),
        'aria-pressed': a.id === selected ? 'true' : 'false' }, fmtTime(a.timestamp))),
      h('td', { class: 'num' }, fmtNum(a.anomaly_score * 100, 0)),
      h('td', {}, h('span', { class: riskClass(a.risk_level) }, a.risk_level)),
      h('td', { class: 'num' }, `${a.betti_h0}/${a.betti_h1}/${a.betti_h2}`)));
    listBox.append(h('table', {},
      h('caption', {}, `Latest ${rows.length} of this stream's anomalies`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col' }, 'Score'),
        h('th', { scope: 'col' }, 'Risk'), h('th', { scope: 'col' }, 'Betti H0/H1/H2'))),
      h('tbody', {}, rows)));
  };

  const drawDetail = async () => {
    clear(detail);
    let a = anomalies.find((x) => x.id === selected) || null;
    if (!a && selected) {
      try { a = await api.get(`/api/anomalies/${encodeURIComponent(selected)}`, { signal }); } catch { a = null; }
    }
    if (!a) a = anomalies[0] || null;
    if (!a) {
      detail.append(h('h2', { id: 'sel-title' }, 'Topology of an anomaly'),
        h('p', {}, 'When this stream has an anomaly, its persistence diagram, barcode and landscape appear here.'));
      return;
    }
    const r = analysisOf(a);
    const sa = r?.security_analysis || {};
    const threats = Array.isArray(sa.threats) ? sa.threats : [];
    const mitigation = Array.isArray(sa.mitigation) ? sa.mitigation : [];
    append(detail, [
      h('h2', { id: 'sel-title' }, `Anomaly at ${fmtTime(a.timestamp)}`),
      h('p', {}, h('span', { class: riskClass(a.risk_level) }, a.risk_level),
        ` score ${fmtNum(a.anomaly_score * 100, 1)}`,
        r?.scores ? ` (betti ${fmtNum(r.scores.betti, 0)}, entropy ${fmtNum(r.scores.entropy, 0)}, ml ${fmtNum(r.scores.ml, 0)})` : '',
        ` · value ${fmtNum(valueOf(a), 3)} · Betti ${a.betti_h0}/${a.betti_h1}/${a.betti_h2}`,
        r?.window_size ? ` · window of ${r.window_size}` : ''),
      r?.detector?.explanation ? h('p', { class: 'explain' }, r.detector.explanation) : null]);
    if (r?.persistence) {
      // The diagram itself is the server's SVG (the same image reports and e-mails use), fetched with the bearer
      // header and shown from a blob: URL, so no token goes into an image link.
      const img = h('img', { class: 'server-diagram', alt: `Persistence diagram of the anomaly at ${fmtTime(a.timestamp)} (H0 circles, H1 squares, H2 triangles)`, width: 360, height: 360 });
      const save = h('a', { class: 'small', download: `diagram-${a.id}.svg` }, 'Download SVG');
      serverDiagram(a.id, img, save);
      detail.append(h('div', { class: 'topo' },
        h('figure', {}, img, h('figcaption', {}, 'Persistence diagram (H0 ●, H1 ■, H2 ▲; standardised units) · ', save)),
        (r.persistence.h1?.length || r.persistence.h2?.length)
          ? h('figure', {}, diagram(r.persistence, { dims: ['h1', 'h2'] }), h('figcaption', {}, 'H1 and H2 alone, on their own scale'))
          : null,
        h('figure', {}, barcode(r.persistence), h('figcaption', {}, 'Barcode')),
        h('figure', {}, landscape(r.topology_features?.landscape), h('figcaption', {},
          `H1 landscape · entropy ${fmtNum(r.topology_features?.entropy, 3)} · total lifetime ${fmtNum(r.topology_features?.total_lifetime, 3)}`))));
    } else {
      detail.append(h('p', { class: 'muted' }, 'This anomaly was recorded without an analysis (no persistence to draw).'));
    }
    append(detail, [h('h3', {}, 'MITRE ATT&CK mapping'),
      h('p', {}, `Confidence ${fmtNum((sa.confidence ?? NaN) * 100, 0)} %`),
      threats.length
        ? h('table', { class: 'threats' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Tactic'), h('th', { scope: 'col' }, 'Technique'), h('th', { scope: 'col' }, 'Why'))),
          h('tbody', {}, threats.map((t) => h('tr', {}, h('td', {}, t.tactic ?? ''),
            h('td', {}, `${t.technique_id ?? ''} ${t.technique ?? ''}`), h('td', {}, t.description ?? '')))))
        : h('p', { class: 'muted' }, 'No technique mapped.'),
      mitigation.length ? [h('h3', {}, 'Mitigation'), h('ul', {}, mitigation.map((m) => h('li', {}, String(m))))] : null]);
  };

  let diagramUrl = null;
  signal.addEventListener('abort', () => { if (diagramUrl) URL.revokeObjectURL(diagramUrl); });
  const serverDiagram = async (id, img, link) => {
    try {
      const r = await api.request(`/api/anomalies/${encodeURIComponent(id)}/diagram.svg`, { raw: true, signal, headers: { Accept: 'image/svg+xml' } });
      const url = URL.createObjectURL(await r.blob());
      if (diagramUrl) URL.revokeObjectURL(diagramUrl);
      diagramUrl = url;
      img.src = url;
      link.href = url;
    } catch (e) {
      if (!signal.aborted) img.alt = `The diagram could not be loaded: ${e.message}`;
    }
  };

  // The stored window's topology, for compact analyses: one request at a time, at most one per TOPO_REFRESH_MS.
  let topoAt = 0;
  let topoBusy = false;
  let topoTimer = 0;
  const refreshTopo = () => {
    if (topoBusy || topoTimer || signal.aborted) return;
    topoTimer = setTimeout(async () => {
      topoTimer = 0;
      topoBusy = true;
      topoAt = Date.now();
      try {
        const r = await api.get(`/api/streams/${encodeURIComponent(name)}/analysis`, { signal });
        if (r?.window) { topo = r.window; schedule(); }
      } catch { /* the next compact analysis asks again */ } finally { topoBusy = false; }
    }, Math.max(0, topoAt + TOPO_REFRESH_MS - Date.now()));
  };
  signal.addEventListener('abort', () => { if (topoTimer) clearTimeout(topoTimer); });

  // One feed message: applied to the page's data at once (none is dropped); drawn at the next frame.
  const apply = (m) => {
    const r = m?.analysis;
    if (!r || typeof r !== 'object') return;
    if (!win) win = { stream: name, events: 0, status: 'buffering', values: [], times: [], score: null, anomaly_threshold: NaN, updated_at: null };
    win.events += 1;
    win.values.push(m.value);
    win.times.push(typeof m.timestamp === 'number' ? m.timestamp : null);
    win.updated_at = Date.now();
    if (r.status === 'buffering') {
      win.status = 'buffering';
      return;
    }
    while (win.values.length > r.window_size) { win.values.shift(); win.times.shift(); }
    win.status = r.calibrated ? 'live' : 'calibrating';
    win.score = r.scores?.total ?? null;
    if (r.compact) refreshTopo(); else topo = r;
    seq += 1;
    hist.push({ x: seq, betti: r.betti_numbers || {}, scores: r.scores || {} });
    if (hist.length > HISTORY) hist.shift();
  };

  // Each drawn frame is measured with the User Timing API: `stream-update` is the frame's work,
  // `stream-latency` from the oldest message of the frame to the drawn page, so the cost per update can be read
  // in the browser's own timeline. The work is split over two frames (the window, status and per-event charts;
  // then the window's diagram, barcode and landscape), so no single frame carries all of it.
  let pending = [];
  let frame = 0;
  let topoFrame = 0;
  const drawTopoFrame = () => {
    topoFrame = 0;
    if (signal.aborted) return;
    const t0 = performance.now();
    drawCurrentTopo();
    performance.measure('stream-update', { start: t0, end: performance.now() });
  };
  const drawFrame = () => {
    frame = 0;
    if (signal.aborted) return;
    const t0 = performance.now();
    const oldest = pending[0];
    pending = [];
    drawStatus();
    drawWindow();
    drawTrends();
    const t1 = performance.now();
    performance.measure('stream-update', { start: t0, end: t1 });
    if (oldest !== undefined) performance.measure('stream-latency', { start: oldest, end: t1 });
    if (!topoFrame) topoFrame = requestAnimationFrame(drawTopoFrame);
  };
  const schedule = () => { if (!frame) frame = requestAnimationFrame(drawFrame); };

  await Promise.all([loadCurrent(), loadAnomalies()]);
  if (!selected) selected = anomalies[0]?.id ?? null;
  drawStatus();
  drawWindow();
  drawCurrentTopo();
  drawTrends();
  drawList();
  await drawDetail();
  await renderConfig(configBox, name, signal);

  signal.addEventListener('abort', () => {
    if (frame) cancelAnimationFrame(frame);
    if (topoFrame) cancelAnimationFrame(topoFrame);
  });
  api.sse(`/api/realtime/stream${api.query({ stream: name })}`, async (ev, data) => {
    if (ev === 'analysis') {
      try { apply(JSON.parse(data)); } catch { return; }
      pending.push(performance.now());
      schedule();
      return;
    }
    if (ev === 'lagged') {
      // Too far behind: say so, and take the stored state as the new starting point.
      try { missed += Number(JSON.parse(data).missed) || 0; } catch { /* counted as unknown */ }
      await loadCurrent().catch(() => {});
      schedule();
      return;
    }
    if (ev !== 'anomaly') return;
    let r;
    try { r = JSON.parse(data); } catch { return; }
    if (r?.stream !== name) return;
    await loadAnomalies().catch(() => {});
    drawList();
    schedule();
    if (!params.get('anomaly')) { selected = anomalies[0]?.id ?? null; drawDetail(); }
  }, signal, () => {
    // (Re)connected: events may have arrived in between; start again from the stored state.
    loadCurrent().then(schedule).catch(() => {});
  });
}

// The editable part of a stream's configuration. The whole stored configuration is sent back with the edits
// (a PUT replaces it); fields not shown keep their stored values.
async function renderConfig(box, name, signal) {
  clear(box);
  const path = `/api/streams/${encodeURIComponent(name)}/config`;
  const cfg = await api.get(path, { signal });
  const editable = api.can('analyst');
  const num = (key, value, attrs) => h('input', { type: 'number', name: key, value, required: true, disabled: !editable, ...attrs });
  const inputs = {
    anomaly_threshold: num('anomaly_threshold', cfg.anomaly_threshold, { min: 0, max: 100, step: 'any' }),
    window_size: num('window_size', cfg.window_size, { min: 1, step: 1 }),
    embedding_dim: num('embedding_dim', cfg.embedding_dim, { min: 1, step: 1 }),
    embedding_delay: num('embedding_delay', cfg.embedding_delay, { min: 1, step: 1 }),
    max_homology_dim: num('max_homology_dim', cfg.max_homology_dim, { min: 0, max: 2, step: 1 }),
    w_betti: num('w_betti', cfg.weights?.betti, { min: 0, step: 'any' }),
    w_entropy: num('w_entropy', cfg.weights?.entropy, { min: 0, step: 'any' }),
    w_ml: num('w_ml', cfg.weights?.ml, { min: 0, step: 'any' }),
  };
  const msg = h('p', { role: 'status', class: 'muted' });
  const form = h('form', { class: 'config-form', 'aria-describedby': 'cfg-note' },
    h('div', { class: 'fields' },
      field('Anomaly threshold (0–100)', inputs.anomaly_threshold, 'total score above which an event is an anomaly'),
      field('Window (events)', inputs.window_size),
      field('Embedding dimension', inputs.embedding_dim),
      field('Embedding delay', inputs.embedding_delay),
      field('Highest homology dimension', inputs.max_homology_dim),
      field('Weight: Betti', inputs.w_betti),
      field('Weight: entropy', inputs.w_entropy),
      field('Weight: ML', inputs.w_ml)),
    editable ? h('button', { type: 'submit' }, 'Save configuration') : null, msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const n = (k) => Number(inputs[k].value);
    const body = {
      ...cfg,
      anomaly_threshold: n('anomaly_threshold'),
      window_size: n('window_size'),
      embedding_dim: n('embedding_dim'),
      embedding_delay: n('embedding_delay'),
      max_homology_dim: n('max_homology_dim'),
      weights: { ...(cfg.weights || {}), betti: n('w_betti'), entropy: n('w_entropy'), ml: n('w_ml') },
    };
    try {
      const saved = await api.put(path, body);
      Object.assign(cfg, saved);
      msg.className = 'ok';
      msg.textContent = `Saved: threshold ${saved.anomaly_threshold}, window ${saved.window_size}.`;
      toast('Configuration saved.');
    } catch (x) {
      msg.className = 'error';
      msg.textContent = `Not saved: ${x.message}`;
    }
  });
  box.append(h('h2', { id: 'cfg-title' }, 'Configuration'),
    h('p', { id: 'cfg-note', class: 'muted small' }, editable
      ? 'Changing the window, embedding or homology dimension makes the stream recalibrate. The server refuses windows whose homology would cost too much.'
      : `Your role (${api.role()}) can read this configuration; analysts and admins change it.`),
    form);
}
