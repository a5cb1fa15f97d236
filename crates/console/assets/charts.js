// SVG charts drawn from API data: sparkline, time series with marks, persistence diagram, barcode, landscape,
// bar charts. Colours come from CSS classes (so light/dark follow the system); every chart has a text label
// for screen readers (role="img" + aria-label) and a <title> per mark for pointer users.

const NS = 'http://www.w3.org/2000/svg';

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function root(w, h, label, cls = '') {
  return s('svg', { viewBox: `0 0 ${w} ${h}`, class: `chart ${cls}`, role: 'img', 'aria-label': label,
    preserveAspectRatio: 'xMidYMid meet' });
}

function finite(v) { return typeof v === 'number' && Number.isFinite(v); }

function extent(values, pad = 0.05) {
  const xs = values.filter(finite);
  if (!xs.length) return [0, 1];
  let lo = Math.min(...xs);
  let hi = Math.max(...xs);
  if (lo === hi) { lo -= 1; hi += 1; }
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

function scale([d0, d1], [r0, r1]) {
  return (v) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0);
}

// About `n` round tick values across [lo, hi].
export function ticks(lo, hi, n = 5) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => span / st <= n) ?? 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function fmtTick(v) {
  const a = Math.abs(v);
  if (a >= 1e4 || (a > 0 && a < 1e-3)) return v.toExponential(1);
  return String(+v.toPrecision(4));
}

function axes(g, x, y, [x0, x1], [y0, y1], box, xfmt = fmtTick) {
  const [l, t, r, b] = box;
  for (const v of ticks(y0, y1, 4)) {
    g.append(s('line', { x1: l, x2: r, y1: y(v), y2: y(v), class: 'grid' }));
    g.append(s('text', { x: l - 4, y: y(v) + 3, class: 'tick', 'text-anchor': 'end' }, fmtTick(v)));
  }
  for (const v of ticks(x0, x1, 5)) {
    g.append(s('text', { x: x(v), y: b + 12, class: 'tick', 'text-anchor': 'middle' }, xfmt(v)));
  }
  g.append(s('line', { x1: l, x2: r, y1: b, y2: b, class: 'axis' }));
  g.append(s('line', { x1: l, x2: l, y1: t, y2: b, class: 'axis' }));
}

export function sparkline(values, label, w = 160, h = 36) {
  const svg = root(w, h, label, 'spark');
  const ys = values.filter(finite);
  if (ys.length < 2) {
    svg.append(s('text', { x: w / 2, y: h / 2 + 4, class: 'empty', 'text-anchor': 'middle' }, 'no data yet'));
    return svg;
  }
  const x = scale([0, ys.length - 1], [1, w - 1]);
  const y = scale(extent(ys), [h - 2, 2]);
  svg.append(s('polyline', { class: 'line', points: ys.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ') }));
  return svg;
}

// A time series. `points`: [{x (ms or index), y}]; `marks`: [{x, y, label, id, selected}] drawn as circles
// (clickable when `onMark` is given); `hline`: {y, label}.
export function series(points, { label, marks = [], onMark, hline, w = 720, h = 240, xTime = true } = {}) {
  const svg = root(w, h, label, 'series');
  const box = [48, 10, w - 10, h - 22];
  const pts = points.filter((p) => finite(p.x) && finite(p.y));
  if (!pts.length) {
    svg.append(s('text', { x: w / 2, y: h / 2, class: 'empty', 'text-anchor': 'middle' }, 'no data yet'));
    return svg;
  }
  const xd = extent(pts.map((p) => p.x).concat(marks.map((m) => m.x)), 0.01);
  const yd = extent(pts.map((p) => p.y).concat(marks.map((m) => m.y), hline ? [hline.y] : []));
  const x = scale(xd, [box[0], box[2]]);
  const y = scale(yd, [box[3], box[1]]);
  const g = s('g');
  const xfmt = xTime ? (v) => new Date(v).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : fmtTick;
  axes(g, x, y, xd, yd, box, xfmt);
  if (hline && finite(hline.y)) {
    g.append(s('line', { x1: box[0], x2: box[2], y1: y(hline.y), y2: y(hline.y), class: 'threshold' }));
    g.append(s('text', { x: box[2] - 2, y: y(hline.y) - 3, class: 'tick', 'text-anchor': 'end' }, hline.label));
  }
  g.append(s('polyline', { class: 'line', points: pts.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ') }));
  for (const m of marks.filter((m) => finite(m.x) && finite(m.y))) {
    const c = s('circle', { cx: x(m.x), cy: y(m.y), r: m.selected ? 7 : 5,
      class: `mark${m.selected ? ' selected' : ''}`, 'data-id': m.id ?? '' }, s('title', {}, m.label || ''));
    if (onMark) {
      c.setAttribute('tabindex', '0');
      c.setAttribute('role', 'button');
      c.setAttribute('aria-label', m.label || 'anomaly');
      c.addEventListener('click', () => onMark(m));
      c.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onMark(m); } });
    }
    g.append(c);
  }
  svg.append(g);
  return svg;
}

// Several named lines over the same x: `lines` = [{name, cls, points:[{x,y}]}], with a legend.
// `dots: false` leaves out the per-point circles (live charts redrawn many times a second).
export function multi(lines, { label, w = 720, h = 200, xTime = true, dots = true, id } = {}) {
  const svg = root(w, h, label, 'multi');
  if (id) svg.id = id;
  const box = [48, 22, w - 10, h - 22];
  const all = lines.flatMap((l) => l.points).filter((p) => finite(p.x) && finite(p.y));
  if (!all.length) {
    svg.append(s('text', { x: w / 2, y: h / 2, class: 'empty', 'text-anchor': 'middle' }, 'no data yet'));
    return svg;
  }
  const xd = extent(all.map((p) => p.x), 0.02);
  const yd = extent(all.map((p) => p.y).concat([0]));
  const x = scale(xd, [box[0], box[2]]);
  const y = scale(yd, [box[3], box[1]]);
  const g = s('g');
  const xfmt = xTime ? (v) => new Date(v).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }) : fmtTick;
  axes(g, x, y, xd, yd, box, xfmt);
  let lx = box[0];
  for (const l of lines) {
    const pts = l.points.filter((p) => finite(p.x) && finite(p.y));
    if (pts.length > 1) g.append(s('polyline', { class: `line ${l.cls}`, points: pts.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ') }));
    if (dots || pts.length === 1) for (const p of pts) g.append(s('circle', { cx: x(p.x), cy: y(p.y), r: 2.5, class: `dot ${l.cls}` }));
    g.append(s('rect', { x: lx, y: 6, width: 10, height: 10, class: `key ${l.cls}` }));
    g.append(s('text', { x: lx + 14, y: 15, class: 'tick' }, l.name));
    lx += 24 + l.name.length * 7;
  }
  svg.append(g);
  return svg;
}

const DIMS = ['h0', 'h1', 'h2'];

function pairs(persistence, d) {
  const list = Array.isArray(persistence?.[d]) ? persistence[d] : [];
  return list.filter((p) => Array.isArray(p) && finite(p[0])).map((p) => [p[0], finite(p[1]) ? p[1] : null]);
}

// Persistence diagram: each class a point (birth, death); essential classes (death null) on a dashed line at
// the top, labelled ∞; the diagonal birth = death.
// `dims` limits the drawing (and its scale) to some dimensions: H0's long bars can squash H1/H2 into a corner.
export function diagram(persistence, { w = 320, h = 320, dims = DIMS } = {}) {
  const byDim = DIMS.map((d) => (dims.includes(d) ? pairs(persistence, d) : []));
  const total = byDim.reduce((n, l) => n + l.length, 0);
  const svg = root(w, h, `Persistence diagram: ${DIMS.filter((d) => dims.includes(d)).map((d) => `${byDim[DIMS.indexOf(d)].length} ${d.toUpperCase()} classes`).join(', ')}`, 'diagram');
  const box = [40, 14, w - 12, h - 28];
  const vals = byDim.flat().flatMap(([b, d]) => (d === null ? [b] : [b, d]));
  let hi = vals.length ? Math.max(...vals, 0) : 1;
  if (!(hi > 0)) hi = 1;
  const infY = hi * 1.1;
  const dom = [0, infY * 1.03];
  const x = scale(dom, [box[0], box[2]]);
  const y = scale(dom, [box[3], box[1]]);
  const g = s('g');
  axes(g, x, y, [0, hi], [0, hi], box);
  g.append(s('line', { x1: x(0), y1: y(0), x2: x(dom[1]), y2: y(dom[1]), class: 'diag' }));
  g.append(s('line', { x1: box[0], x2: box[2], y1: y(infY), y2: y(infY), class: 'inf' }));
  g.append(s('text', { x: box[0] - 4, y: y(infY) + 3, class: 'tick', 'text-anchor': 'end' }, '∞'));
  g.append(s('text', { x: (box[0] + box[2]) / 2, y: h - 2, class: 'axis-label', 'text-anchor': 'middle' }, 'birth'));
  g.append(s('text', { x: 10, y: (box[1] + box[3]) / 2, class: 'axis-label', 'text-anchor': 'middle',
    transform: `rotate(-90 10 ${(box[1] + box[3]) / 2})` }, 'death'));
  byDim.forEach((list, i) => {
    for (const [b, d] of list) {
      const cy = d === null ? y(infY) : y(d);
      const shape = i === 0 ? s('circle', { cx: x(b), cy, r: 3.5 })
        : i === 1 ? s('rect', { x: x(b) - 3.5, y: cy - 3.5, width: 7, height: 7 })
          : s('path', { d: `M${x(b)},${cy - 4.5}L${x(b) + 4.5},${cy + 3.5}L${x(b) - 4.5},${cy + 3.5}Z` });
      shape.setAttribute('class', `pt ${DIMS[i]}`);
      shape.append(s('title', {}, `${DIMS[i].toUpperCase()} [${b.toFixed(3)}, ${d === null ? '∞' : d.toFixed(3)})`));
      g.append(shape);
    }
  });
  if (!total) g.append(s('text', { x: w / 2, y: h / 2, class: 'empty', 'text-anchor': 'middle' }, 'no classes'));
  svg.append(g);
  return svg;
}

// Barcode: one horizontal bar per class, grouped by dimension, longest first; essential bars run to the edge
// with an arrow.
export function barcode(persistence, { w = 420 } = {}) {
  const byDim = DIMS.map((d) => pairs(persistence, d).sort((a, b) => ((b[1] ?? Infinity) - b[0]) - ((a[1] ?? Infinity) - a[0])));
  const rowH = 5;
  const gap = 16;
  const n = byDim.reduce((k, l) => k + l.length, 0);
  const h = 20 + n * rowH + gap * 3 + 10;
  const svg = root(w, h, `Barcode: ${DIMS.map((d, i) => `${byDim[i].length} ${d.toUpperCase()} bars`).join(', ')}`, 'barcode');
  const vals = byDim.flat().flatMap(([b, d]) => (d === null ? [b] : [b, d]));
  const hi = vals.length ? Math.max(...vals, 1e-9) * 1.1 : 1;
  const left = 34;
  const x = scale([0, hi], [left, w - 14]);
  let yy = 6;
  byDim.forEach((list, i) => {
    yy += gap;
    svg.append(s('text', { x: 2, y: yy - 4, class: 'tick' }, `${DIMS[i].toUpperCase()} (${list.length})`));
    for (const [b, d] of list) {
      const x2 = d === null ? w - 14 : x(d);
      const bar = s('line', { x1: x(b), x2: Math.max(x2, x(b) + 1), y1: yy, y2: yy, class: `bar ${DIMS[i]}` },
        s('title', {}, `${DIMS[i].toUpperCase()} [${b.toFixed(3)}, ${d === null ? '∞' : d.toFixed(3)})`));
      svg.append(bar);
      if (d === null) svg.append(s('path', { d: `M${w - 14},${yy - 3}L${w - 8},${yy}L${w - 14},${yy + 3}Z`, class: `pt ${DIMS[i]}` }));
      yy += rowH;
    }
  });
  for (const v of ticks(0, hi, 5)) {
    svg.append(s('text', { x: x(v), y: h - 2, class: 'tick', 'text-anchor': 'middle' }, fmtTick(v)));
  }
  return svg;
}

export function landscape(ls, { w = 420, h = 180 } = {}) {
  const xs = Array.isArray(ls?.x) ? ls.x : [];
  const ys = Array.isArray(ls?.y) ? ls.y : [];
  const points = xs.map((x, i) => ({ x, y: ys[i] }));
  return series(points, { label: `First persistence landscape of H1, ${points.length} samples`, w, h, xTime: false });
}

// Vertical bars: `entries` = [[label, value, cls?]].
export function bars(entries, { label, w = 420, h = 180, onBar } = {}) {
  const svg = root(w, h, label, 'bars');
  const box = [36, 8, w - 6, h - 34];
  const max = Math.max(1, ...entries.map((e) => e[1]));
  const y = scale([0, max * 1.05], [box[3], box[1]]);
  for (const v of ticks(0, max, 4)) {
    svg.append(s('line', { x1: box[0], x2: box[2], y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: box[0] - 4, y: y(v) + 3, class: 'tick', 'text-anchor': 'end' }, fmtTick(v)));
  }
  const n = Math.max(entries.length, 1);
  const bw = (box[2] - box[0]) / n;
  const every = Math.ceil(n / Math.floor((box[2] - box[0]) / 44));
  entries.forEach(([name, v, cls], i) => {
    const bx = box[0] + i * bw + bw * 0.1;
    const r = s('rect', { x: bx, y: y(v), width: Math.max(bw * 0.8, 1), height: Math.max(box[3] - y(v), 0), class: `col ${cls || ''}` },
      s('title', {}, `${name}: ${v}`));
    if (onBar) { r.addEventListener('click', () => onBar(name)); r.classList.add('clickable'); }
    svg.append(r);
    if (i % every === 0) {
      const short = name.length > 10 ? `${name.slice(0, 9)}…` : name;
      svg.append(s('text', { x: bx + bw * 0.4, y: box[3] + 13, class: 'tick', 'text-anchor': 'middle' }, short));
    }
  });
  svg.append(s('line', { x1: box[0], x2: box[2], y1: box[3], y2: box[3], class: 'axis' }));
  if (!entries.length) svg.append(s('text', { x: w / 2, y: h / 2, class: 'empty', 'text-anchor': 'middle' }, 'nothing matched'));
  return svg;
}
