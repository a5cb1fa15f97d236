// Browser tests of the Vigil console: builds and starts the real server (temp SQLite database, random port),
// creates users with the CLI, ingests events over the API, and drives Debian's Chromium with playwright-core.
//   node run.mjs               # all scenarios; screenshots in ./screenshots (docs copies with --docs)
// Env: VIGIL_BIN (skip the build and use this binary), CHROMIUM (default /usr/bin/chromium).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, readFileSync, readdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const shots = join(here, 'screenshots');
const docs = process.argv.includes('--docs');
const PASSWORD = 'Console-test-1!';

function log(...a) { console.log(...a); }

function build() {
  if (process.env.VIGIL_BIN) return process.env.VIGIL_BIN;
  log('== cargo build -p vigil');
  const r = spawnSync('cargo', ['build', '-p', 'vigil', '--locked'], { cwd: repo, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('cargo build failed');
  return join(repo, 'target', 'debug', 'vigil');
}

function createUser(bin, dataDir, username, role) {
  const r = spawnSync(bin, ['user', 'create', '--username', username, '--email', `${username}@example.com`,
    '--role', role, '--data-dir', dataDir], { input: `${PASSWORD}\n`, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`user create ${username}: ${r.stderr}`);
}

function startServer(bin, dataDir) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['serve', '--port', '0', '--data-dir', dataDir], {
      // Webhooks to the test's own receiver on loopback, with short retries.
      env: { ...process.env, RUST_LOG: 'warn', DATABASE_URL: '', JWT_SECRET: '', VIGIL_ENV: 'development',
        WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_MAX_ATTEMPTS: '2', WEBHOOK_BACKOFF_MS: '50',
        // Every scenario calls the API from 127.0.0.1; the general limit (100 a minute) is not what is tested here.
        API_RATE_LIMIT: '100000' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /vigil listening on (http:\/\/\S+)/.exec(buf);
      if (m) resolve({ child, base: m[1] });
    });
    child.on('exit', (code) => reject(new Error(`vigil exited with ${code}`)));
  });
}

async function apiLogin(base, username) {
  const r = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }) });
  assert.equal(r.status, 200, `login ${username}`);
  return (await r.json()).access_token;
}

async function api(base, token, path, opts = {}) {
  const r = await fetch(`${base}${path}`, { method: opts.method || 'GET',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// Deterministic noise (SplitMix-like LCG + Box–Muller), so every run sends the same series.
function noise(n, seed) {
  let s = BigInt(seed);
  const next = () => {
    s = (s * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
    return Number(s >> 11n) / 2 ** 53;
  };
  return Array.from({ length: n }, () => 10 + Math.sqrt(-2 * Math.log(next() || 1e-12)) * Math.cos(2 * Math.PI * next()));
}

// Raw (compressed) bytes of one GET, as a browser with gzip would transfer them.
function rawSize(url) {
  return new Promise((resolve, reject) => {
    http.get(url, { headers: { 'Accept-Encoding': 'gzip' } }, (res) => {
      let n = 0;
      res.on('data', (d) => { n += d.length; });
      res.on('end', () => resolve({ bytes: n, encoding: res.headers['content-encoding'] || 'identity' }));
    }).on('error', reject);
  });
}

const results = [];
async function step(name, f) {
  const t0 = Date.now();
  try {
    await f();
    results.push([name, 'ok', Date.now() - t0]);
    log(`ok    ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push([name, 'FAIL', Date.now() - t0]);
    log(`FAIL  ${name}\n${e?.stack || e}`);
    throw e;
  }
}

async function signIn(page, base, username) {
  await page.goto(`${base}/`);
  await page.getByLabel('Username or email').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Streams' }).waitFor();
}

async function main() {
  const bin = build();
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-console-'));
  mkdirSync(shots, { recursive: true });
  for (const [u, r] of [['admin1', 'admin'], ['analyst1', 'analyst'], ['viewer1', 'viewer']]) createUser(bin, dataDir, u, r);
  const { child, base } = await startServer(bin, dataDir);
  // A browser that does not start must not leave the server running.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  }).catch((e) => { child.kill('SIGTERM'); rmSync(dataDir, { recursive: true, force: true }); throw e; });
  const pageErrors = [];
  const newPage = async (viewport = { width: 1280, height: 900 }, colorScheme = 'light') => {
    const ctx = await browser.newContext({ viewport, colorScheme, acceptDownloads: true });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    // Console errors include CSP refusals ("Refused to …"); the 422 and 403 the scenarios provoke on purpose are
    // logged by Chromium as failed loads and are not errors of the page.
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource: .* (403|422) /.test(m.text())) pageErrors.push(m.text());
    });
    return page;
  };
  try {
    const token = await apiLogin(base, 'analyst1');
    const t0 = Date.UTC(2026, 0, 12, 8, 0, 0);
    const events = (xs, from) => xs.map((value, i) => ({ stream: 'cpu', value,
      timestamp: new Date(t0 + (from + i) * 1000).toISOString() }));
    const normal = noise(400, 7);

    await step('page weight: first load under 300 KB compressed', async () => {
      const html = await (await fetch(`${base}/`)).text();
      const urls = [...html.matchAll(/(?:href|src)="(\/console\/assets\/[^"]+)"/g)].map((m) => m[1]);
      // Every module the app imports, not only those the page names.
      const version = /\/console\/assets\/([^/]+)\//.exec(urls[0])[1];
      const files = ['app.js', 'api.js', 'charts.js', 'dom.js', 'overview.js', 'stream.js', 'anomalies.js', 'alerts.js', 'users.js', 'maxidom.js', 'app.css', 'favicon.svg'];
      let total = (await rawSize(`${base}/`)).bytes;
      let plain = html.length;
      for (const f of files) {
        const u = `${base}/console/assets/${version}/${f}`;
        const { bytes, encoding } = await rawSize(u);
        total += bytes;
        plain += (await (await fetch(u)).arrayBuffer()).byteLength;
        if (f.endsWith('.js')) assert.equal(encoding, 'gzip', `${f} is served gzip`);
      }
      log(`      first load: ${total} bytes compressed (${plain} uncompressed) for the page and ${files.length} assets`);
      assert.ok(total < 300 * 1024);
    });

    const analyst = await newPage();
    await step('sign in (analyst)', async () => {
      await signIn(analyst, base, 'analyst1');
      await analyst.getByText('No stream has received events yet').waitFor();
      const stored = await analyst.evaluate(() => sessionStorage.getItem('vigil.session'));
      assert.ok(stored && JSON.parse(stored).access, 'tokens kept in sessionStorage');
      assert.ok(!analyst.url().includes('token'), 'no token in the URL');
      const timing = await analyst.evaluate(() => performance.getEntriesByType('navigation')[0].domInteractive);
      log(`      navigation → DOM interactive: ${timing.toFixed(0)} ms`);
    });

    await step('a stream becomes live after ingesting events', async () => {
      let r = await api(base, token, '/api/ingest', { method: 'POST', body: events(normal.slice(0, 5), 0) });
      assert.equal(r.status, 200);
      const card = analyst.locator('[data-stream="cpu"]');
      await card.waitFor();
      assert.equal(await card.getAttribute('data-status'), 'buffering');
      r = await api(base, token, '/api/ingest', { method: 'POST', body: events(normal.slice(5, 300), 5) });
      assert.equal(r.status, 200);
      await analyst.locator('[data-stream="cpu"][data-status="live"]').waitFor({ timeout: 10000 });
      await analyst.locator('[data-stream="cpu"] .events', { hasText: '300' }).waitFor();
      const listed = (await api(base, token, '/api/streams?stream=cpu')).body[0];
      assert.equal(await analyst.locator('[data-stream="cpu"] .score').textContent(), listed.score.toFixed(1));
      // Interactive: a reload (session kept in sessionStorage) until the stream cards are drawn from the API.
      await analyst.reload();
      await analyst.locator('[data-stream="cpu"]').waitFor();
      const ready = await analyst.evaluate(() => performance.now());
      log(`      reload → overview drawn from the API: ${ready.toFixed(0)} ms`);
      assert.ok(ready < 1000, 'interactive within 1 s');
    });

    await step('an injected spike appears as an anomaly with its persistence diagram', async () => {
      const spike = noise(4, 9).map((x, i) => x + (i % 2 === 0 ? 60 : -40));
      const r = await api(base, token, '/api/ingest', { method: 'POST', body: events(spike, 300) });
      assert.equal(r.status, 200);
      assert.ok(r.body.some((a) => a.is_anomaly), 'the spike is an anomaly');
      // The overview learns of it over the live feed.
      await analyst.locator('[data-stream="cpu"] .last-anomaly .risk').waitFor({ timeout: 10000 });
      await api(base, token, '/api/ingest', { method: 'POST', body: events(normal.slice(300, 330), 304) });
      await analyst.locator('[data-stream="cpu"] .events', { hasText: '334' }).waitFor();
      await analyst.screenshot({ path: join(shots, 'overview.png') });
      await analyst.getByRole('link', { name: 'cpu' }).click();
      await analyst.getByRole('heading', { name: /Anomaly at/ }).waitFor();
      const stored = (await api(base, token, '/api/anomalies?source=cpu&limit=1')).body.data[0];
      const p = stored.metadata.analysis.persistence;
      // The anomaly's diagram is the server-rendered SVG: one mark per class of the stored result, loaded as an image.
      const svgText = await (await fetch(`${base}/api/anomalies/${stored.id}/diagram.svg`, { headers: { Authorization: `Bearer ${token}` } })).text();
      assert.equal((svgText.match(/class="pt h\d"/g) || []).length, p.h0.length + p.h1.length + p.h2.length, 'one mark per class of the stored result');
      const img = analyst.locator('#anomaly-detail img.server-diagram');
      await analyst.waitForFunction(() => document.querySelector('#anomaly-detail img.server-diagram')?.naturalWidth > 0);
      assert.match(await img.getAttribute('src'), /^blob:/, 'no token in the image link');
      assert.ok(await analyst.locator('svg.barcode .bar').count() > 0, 'barcode drawn');
      await analyst.locator('#window-chart circle.mark.selected').waitFor();
      // The current window's own topology, as the API computes it from the stored state.
      const current = (await api(base, token, '/api/streams/cpu/analysis')).body;
      const cp = current.window.persistence;
      assert.equal(await analyst.locator('#current-topo svg.diagram .pt').count(), cp.h0.length + cp.h1.length + cp.h2.length,
        'one point per class of the current window');
      assert.ok(await analyst.locator('#current-topo svg.barcode .bar').count() > 0, 'current barcode drawn');
      await analyst.getByRole('heading', { name: 'MITRE ATT&CK mapping' }).waitFor();
      await analyst.screenshot({ path: join(shots, 'stream.png'), fullPage: true });
      await analyst.locator('#anomaly-detail').screenshot({ path: join(shots, 'anomaly-topology.png') });
    });

    await step('filter the anomaly log', async () => {
      // A second stream with its own anomaly, so a filter has something to exclude.
      const other = noise(300, 11).map((value, i) => ({ stream: 'net', value, timestamp: new Date(t0 + i * 1000).toISOString() }));
      other.push(...noise(4, 12).map((x, i) => ({ stream: 'net', value: x + (i % 2 ? -50 : 70), timestamp: new Date(t0 + (300 + i) * 1000).toISOString() })));
      assert.equal((await api(base, token, '/api/ingest', { method: 'POST', body: other })).status, 200);
      const all = (await api(base, token, '/api/anomalies?limit=100')).body;
      const cpu = all.data.filter((a) => a.source_type === 'cpu').length;
      assert.ok(cpu > 0 && cpu < all.total, 'both streams have anomalies');
      await analyst.getByRole('link', { name: 'Anomaly log' }).click();
      await analyst.locator('#log-summary', { hasText: `${all.total} anomal` }).waitFor();
      await analyst.getByLabel('Source', { exact: true }).selectOption('cpu');
      await analyst.getByRole('button', { name: 'Apply' }).click();
      await analyst.locator('#log-summary', { hasText: `${cpu} anomal` }).waitFor();
      const sources = await analyst.locator('#anomaly-table tbody tr td:nth-child(2)').allTextContents();
      assert.ok(sources.length === cpu && sources.every((s) => s === 'cpu'));
      // Minimum score above every stored score: nothing matches.
      await analyst.getByLabel('Minimum score').fill('100');
      await analyst.getByRole('button', { name: 'Apply' }).click();
      const max = Math.max(...all.data.map((a) => a.anomaly_score));
      if (max < 1) await analyst.locator('#log-summary', { hasText: '0 anomalies' }).waitFor();
      await analyst.getByLabel('Minimum score').fill('');
      await analyst.getByRole('button', { name: 'Apply' }).click();
      await analyst.locator('#log-summary', { hasText: `${cpu} anomal` }).waitFor();
      await analyst.screenshot({ path: join(shots, 'anomalies.png'), fullPage: true });
    });

    await step('download an export (CSV and JSON)', async () => {
      const [csv] = await Promise.all([analyst.waitForEvent('download'), analyst.getByRole('button', { name: 'Export CSV' }).click()]);
      assert.match(csv.suggestedFilename(), /^anomalies_\d{8}_\d{6}\.csv$/);
      const text = readFileSync(await csv.path(), 'utf8').trim().split('\n');
      assert.equal(text[0].trim(), 'Timestamp,Source,Is Anomaly,Score,Severity,Betti H0,Betti H1,Betti H2,Entropy');
      const cpu = (await api(base, token, '/api/anomalies?source=cpu&limit=100')).body.total;
      assert.equal(text.length - 1, cpu, 'one row per filtered anomaly');
      const [json] = await Promise.all([analyst.waitForEvent('download'), analyst.getByRole('button', { name: 'Export JSON' }).click()]);
      const rows = JSON.parse(readFileSync(await json.path(), 'utf8'));
      assert.ok(Array.isArray(rows) && rows.length === cpu && rows.every((r) => r.source_type === 'cpu'));
    });

    await step('change a stream threshold as analyst', async () => {
      await analyst.goto(`${base}/#/streams/cpu`);
      const input = analyst.getByLabel('Anomaly threshold (0–100)');
      await input.fill('72.5');
      await analyst.getByRole('button', { name: 'Save configuration' }).click();
      await analyst.getByText('Saved: threshold 72.5').waitFor();
      const cfg = (await api(base, token, '/api/streams/cpu/config')).body;
      assert.equal(cfg.anomaly_threshold, 72.5);
      // A window the server refuses (homology cost limit) is shown with the server's reason, not saved.
      await analyst.getByLabel('Window (events)').fill('500');
      await analyst.getByRole('button', { name: 'Save configuration' }).click();
      await analyst.getByText(/Not saved: .+/).waitFor();
      assert.equal((await api(base, token, '/api/streams/cpu/config')).body.window_size, cfg.window_size);
    });

    await step('a viewer sees the configuration but cannot change it', async () => {
      const viewer = await newPage({ width: 390, height: 844 }, 'dark');
      await signIn(viewer, base, 'viewer1');
      await viewer.screenshot({ path: join(shots, 'overview-phone-dark.png') });
      await viewer.goto(`${base}/#/streams/cpu`);
      const input = viewer.getByLabel('Anomaly threshold (0–100)');
      await input.waitFor();
      assert.equal(await input.isDisabled(), true);
      assert.equal(await viewer.getByRole('button', { name: 'Save configuration' }).count(), 0);
      await viewer.getByText('Your role (viewer) can read this configuration').waitFor();
      // The server refuses it too, whatever the page shows.
      const status = await viewer.evaluate(async () => {
        const s = JSON.parse(sessionStorage.getItem('vigil.session'));
        const r = await fetch('/api/streams/cpu/config', { method: 'PUT', headers: { Authorization: `Bearer ${s.access}`, 'Content-Type': 'application/json' }, body: '{"anomaly_threshold": 10}' });
        return r.status;
      });
      assert.equal(status, 403);
      assert.equal((await api(base, token, '/api/streams/cpu/config')).body.anomaly_threshold, 72.5);
      await viewer.context().close();
    });

    await step('stream detail stays smooth at 200 events/s', async () => {
      await analyst.goto(`${base}/#/streams/cpu`);
      await analyst.locator('#window-chart svg').waitFor();
      await analyst.evaluate(() => { performance.clearMeasures('stream-update'); performance.clearMeasures('stream-latency'); });
      const before = (await api(base, token, '/api/streams?stream=cpu')).body[0].events;
      // 200 events/s for 6 s: a batch of 20 every 100 ms, on the schedule (a late batch does not shift the rest).
      const start = Date.now();
      const xs = noise(1200, 21);
      let sent = 0;
      const posts = [];
      for (let b = 0; b < 60; b += 1) {
        const due = start + b * 100;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
        posts.push(api(base, token, '/api/ingest', { method: 'POST', body: events(xs.slice(b * 20, b * 20 + 20), 1000 + b * 20) }));
        sent += 20;
      }
      const statuses = (await Promise.all(posts)).map((r) => r.status);
      assert.ok(statuses.every((st) => st === 200), `ingest statuses ${statuses}`);
      const elapsed = (Date.now() - start) / 1000;
      // The page counts the analyses the feed delivered (no poll): every event is applied, none lost.
      await analyst.locator('#stream-status', { hasText: `${before + sent} events` }).waitFor({ timeout: 10000 });
      assert.equal(await analyst.locator('#stream-status', { hasText: 'missed' }).count(), 0, 'no update missed');
      const m = await analyst.evaluate(() => performance.getEntriesByName('stream-update').map((e) => e.duration));
      const lat = await analyst.evaluate(() => performance.getEntriesByName('stream-latency').map((e) => e.duration));
      const stats = (xs) => {
        const sorted = [...xs].sort((a, b) => a - b);
        return { mean: xs.reduce((a, b) => a + b, 0) / xs.length, p95: sorted[Math.floor(sorted.length * 0.95)], max: sorted[sorted.length - 1] };
      };
      const u = stats(m);
      const l = stats(lat);
      log(`      ${sent} events in ${elapsed.toFixed(1)} s (${(sent / elapsed).toFixed(0)}/s) over the stream's SSE feed; ` +
        `${m.length} drawn frames: work mean ${u.mean.toFixed(1)} / p95 ${u.p95.toFixed(1)} / max ${u.max.toFixed(1)} ms; ` +
        `message → drawn mean ${l.mean.toFixed(1)} / p95 ${l.p95.toFixed(1)} / max ${l.max.toFixed(1)} ms (User Timing)`);
      assert.ok(m.length >= 20, 'the page redrew while events arrived');
      // p95, not the maximum: on a shared 2-core machine (load 20 while other builds run) one frame in a hundred
      // is preempted by the OS for tens of ms, which says nothing about the page's own work; the max is logged.
      assert.ok(u.p95 < 50, `95 % of updates took up to ${u.p95} ms`);
      const drawnWindows = await analyst.locator('#betti-trend polyline.h0').getAttribute('points');
      assert.ok(drawnWindows.split(' ').length >= 250, 'the per-event Betti chart holds the newest windows');
      await analyst.screenshot({ path: join(shots, 'stream-live.png'), fullPage: true });
    });

    await step('alerts: create, disable, delete', async () => {
      await analyst.goto(`${base}/#/alerts`);
      await analyst.getByText('No alert configuration yet.').waitFor();
      await analyst.getByLabel('Threshold (0–1)').fill('0.9');
      await analyst.getByRole('button', { name: 'Create alert' }).click();
      await analyst.getByLabel('Active', { exact: true }).nth(1).waitFor();
      let mine = (await api(base, token, '/api/alerts')).body;
      assert.equal(mine.length, 1);
      assert.equal(mine[0].threshold, 0.9);
      assert.deepEqual(mine[0].notification_channels, ['websocket']);
      const row = analyst.locator('#alert-list tbody tr');
      await row.getByLabel('Active').uncheck();
      await row.getByRole('button', { name: 'Save' }).click();
      await analyst.getByText('Alert saved.').waitFor();
      mine = (await api(base, token, '/api/alerts')).body;
      assert.equal(mine[0].is_active, false);
      analyst.once('dialog', (d) => d.accept());
      await row.getByRole('button', { name: 'Delete' }).click();
      await analyst.getByText('No alert configuration yet.').waitFor();
      assert.equal((await api(base, token, '/api/alerts')).body.length, 0);
    });

    await step('alerts: recent deliveries with their outcome', async () => {
      // A local receiver: /ok answers 204, /fail 503 (every attempt).
      const hits = [];
      const receiver = http.createServer((req, res) => {
        hits.push(req.url);
        req.resume();
        req.on('end', () => { res.statusCode = req.url.startsWith('/ok') ? 204 : 503; res.end(); });
      });
      await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
      const port = receiver.address().port;
      try {
        for (const path of ['ok?token=secret', 'fail']) {
          const r = await api(base, token, '/api/alerts', { method: 'POST',
            body: { threshold: 0.5, notification_channels: [`webhook:http://127.0.0.1:${port}/${path}`], is_active: true } });
          assert.equal(r.status, 201, JSON.stringify(r.body));
        }
        const fired = await api(base, token, '/api/anomalies', { method: 'POST',
          body: { source_type: 'manual', anomaly_score: 0.97, is_anomaly: true, event_data: { value: 1 } } });
        assert.equal(fired.status, 201, JSON.stringify(fired.body));
        let list = [];
        for (let i = 0; i < 100 && list.length < 2; i += 1) {
          list = (await api(base, token, '/api/alerts/deliveries')).body;
          if (list.length < 2) await new Promise((r) => setTimeout(r, 200));
        }
        assert.equal(list.length, 2, 'both deliveries recorded');
        const ok = list.find((d) => d.outcome === 'delivered');
        const failed = list.find((d) => d.outcome === 'failed');
        assert.equal(ok.last_status, 204);
        assert.ok(!ok.target.includes('secret'), 'the query (and its secret) is not kept');
        assert.equal(failed.attempts, 2);
        assert.equal(failed.last_status, 503);
        // The page is already open (previous step): its Refresh button reads the history again.
        await analyst.locator('#deliveries').getByRole('button', { name: 'Refresh' }).click();
        await analyst.locator('#delivery-table tr[data-outcome="delivered"]').waitFor();
        assert.equal(await analyst.locator('#delivery-table tbody tr').count(), 2);
        assert.equal(await analyst.locator('#delivery-table tr[data-outcome="failed"] td:nth-child(4)').textContent(), '503');
        await analyst.screenshot({ path: join(shots, 'alerts.png'), fullPage: true });
        // The viewer role has no alerts: the API refuses the history too.
        const viewerToken = await apiLogin(base, 'viewer1');
        assert.equal((await api(base, viewerToken, '/api/alerts/deliveries')).status, 403);
        for (const a of (await api(base, token, '/api/alerts')).body) await api(base, token, `/api/alerts/${a.id}`, { method: 'DELETE' });
      } finally {
        receiver.close();
      }
    });

    await step('users (admin): change a role, see and change is_active', async () => {
      const admin = await newPage();
      await signIn(admin, base, 'admin1');
      await admin.getByRole('link', { name: 'Users' }).click();
      const select = admin.getByLabel('Role of viewer1');
      await select.selectOption('analyst');
      await admin.getByText('viewer1 is now analyst.').waitFor();
      const adminToken = await admin.evaluate(() => JSON.parse(sessionStorage.getItem('vigil.session')).access);
      const list = (await api(base, adminToken, '/api/users?limit=100')).body.data;
      assert.equal(list.find((u) => u.username === 'viewer1').role, 'analyst');
      await select.selectOption('viewer');
      await admin.getByText('viewer1 is now viewer.').waitFor();
      // Deactivate from the page: the list says so, the API agrees, and the account's sessions end.
      const viewerToken = await apiLogin(base, 'viewer1');
      const row = admin.locator('tr[data-user="viewer1"]');
      assert.equal(await row.locator('td.active').textContent(), 'yes');
      admin.once('dialog', (d) => d.accept());
      await admin.getByRole('button', { name: 'Deactivate viewer1' }).click();
      await row.locator('td.active', { hasText: 'no' }).waitFor();
      await admin.screenshot({ path: join(shots, 'users.png'), fullPage: true });
      let again = (await api(base, adminToken, '/api/users?limit=100')).body.data;
      assert.equal(again.find((u) => u.username === 'viewer1').is_active, false);
      assert.equal((await api(base, viewerToken, '/api/auth/me')).status, 401, 'the deactivated session ended');
      await admin.getByRole('button', { name: 'Reactivate viewer1' }).click();
      await row.locator('td.active', { hasText: 'yes' }).waitFor();
      again = (await api(base, adminToken, '/api/users?limit=100')).body.data;
      assert.equal(again.find((u) => u.username === 'viewer1').is_active, true);
      // Not offered to others.
      assert.equal(await analyst.getByRole('link', { name: 'Users' }).isVisible(), false);
      await admin.context().close();
    });

    await step('maxidom (admin): profiles with readiness, model, recent scores and lockouts', async () => {
      // Two profiles through the extension's own API with its real recorded payloads: one trained (each training
      // payload sent twice, to reach the readiness quota) and scored, one barely started with failed passwords.
      const data = process.env.MAXIDOM_DATA || join(repo, '..', 'shared', 'data', 'maxidom-extension');
      const files = readdirSync(data).filter((f) => f.endsWith('.json')).sort();
      const read = (f) => readFileSync(join(data, f), 'utf8');
      const ext = (path, body) => fetch(`${base}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
      const trained = '3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f';
      const fresh = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
      for (const id of [trained, fresh]) assert.equal((await ext(`/api/enroll/${id}`, JSON.stringify({ password: 'Profile-pass-1' }))).status, 200);
      const trains = files.filter((f) => f.includes('_train'));
      for (const f of [...trains, ...trains]) assert.equal((await ext(`/api/train/${trained}`, read(f))).status, 200);
      assert.equal((await ext(`/api/train/${fresh}`, read(trains[0]))).status, 200);
      for (let i = 0; i < 3; i += 1) await ext(`/api/verify_password/${fresh}`, JSON.stringify({ password: 'wrong' }));
      let status;
      for (let i = 0; i < 120; i += 1) {
        status = await (await fetch(`${base}/api/profile/${trained}/status`)).json();
        if (status.model_active) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(status.model_active, 'the trained profile got its model');
      for (const f of files.filter((x) => x.includes('_score'))) assert.equal((await ext(`/api/score/${trained}`, read(f))).status, 200);

      const admin = await newPage();
      await signIn(admin, base, 'admin1');
      await admin.getByRole('link', { name: 'MaxiDOM' }).click();
      const adminToken = await admin.evaluate(() => JSON.parse(sessionStorage.getItem('vigil.session')).access);
      const listed = (await api(base, adminToken, '/api/maxidom/profiles')).body;
      assert.equal(listed.total, 2);
      const a = listed.data.find((p) => p.profile_id === trained);
      const b = listed.data.find((p) => p.profile_id === fresh);
      assert.ok(a.recent_scores.length > 0 && a.anomaly_rate !== null, 'the scored profile has a run');
      assert.equal(b.failed_attempts, 3);
      const rowA = admin.locator(`tr[data-profile="${trained}"]`);
      await rowA.waitFor();
      assert.equal(await rowA.locator('td.model').evaluate((td) => td.firstChild.textContent), `v${a.model_version}`);
      assert.equal(await rowA.locator('svg.runbars rect').count(), a.recent_scores.length);
      assert.equal(await rowA.locator('td.rate').textContent(), `${(a.anomaly_rate * 100).toFixed(0)} %`);
      await admin.locator(`tr[data-profile="${fresh}"] td.lock`, { hasText: '3 failed' }).waitFor();
      await admin.screenshot({ path: join(shots, 'maxidom.png'), fullPage: true });
      // Admins only, in the API as on the page.
      assert.equal((await api(base, token, '/api/maxidom/profiles')).status, 403);
      assert.equal(await analyst.getByRole('link', { name: 'MaxiDOM' }).isVisible(), false);
      await admin.context().close();
    });

    await step('sign out reaches the server', async () => {
      const access = await analyst.evaluate(() => JSON.parse(sessionStorage.getItem('vigil.session')).access);
      await analyst.getByRole('button', { name: 'Sign out' }).click();
      await analyst.getByRole('button', { name: 'Sign in' }).waitFor();
      assert.equal(await analyst.evaluate(() => sessionStorage.getItem('vigil.session')), null);
      const r = await fetch(`${base}/api/auth/me`, { headers: { Authorization: `Bearer ${access}` } });
      assert.equal(r.status, 401, 'the access token is revoked');
    });

    await step('no script errors and no CSP violations', async () => {
      assert.deepEqual(pageErrors, []);
    });
  } finally {
    await browser.close();
    child.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  }
  if (docs) {
    const out = join(repo, 'docs', 'screenshots');
    mkdirSync(out, { recursive: true });
    for (const f of ['overview.png', 'stream-live.png', 'anomaly-topology.png', 'anomalies.png', 'maxidom.png']) copyFileSync(join(shots, f), join(out, f));
  }
  log(`${results.filter((r) => r[1] === 'ok').length}/${results.length} browser scenarios passed`);
}

main().catch((e) => { console.error(e?.message || e); process.exit(1); });
