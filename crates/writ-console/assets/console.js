// writ console: a little vanilla script per page. Everything it shows comes
// from this server's own routes; text is always set with textContent.
'use strict';

const TOKEN_KEY = 'writ.admin-token';

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === 'text') e.textContent = v; else e.setAttribute(k, String(v));
  }
  for (const k of kids) if (k) e.append(k);
  return e;
}

function $(id) { return document.getElementById(id); }
function status(msg) { const s = $('status'); if (s) s.textContent = msg || ''; }
function time(ms) { return ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : ''; }
function short(s, n) { s = String(s || ''); n = n || 14; return s.length > n ? s.slice(0, n) + '…' : s; }
function pill(text, kind) { return el('span', { class: 'pill ' + (kind || text), text }); }

function authHeaders(h) {
  h = h || {};
  if (token()) h.Authorization = 'Bearer ' + token();
  return h;
}

const SIGN_IN = 'Sign in (top right) with an auditor or administrator token to see this: the log\'s content and the console\'s views are not public.';

// Pages whose views need a token ask for one before they ask the server.
function needToken() { if (!token()) throw new Error(SIGN_IN); }

async function api(path, opts) {
  const o = Object.assign({ headers: {} }, opts || {});
  if (o.auth && !token()) throw new Error('sign in with an administrator token first');
  authHeaders(o.headers);
  if (o.json !== undefined) {
    o.method = o.method || 'POST';
    o.headers['Content-Type'] = 'application/json';
    o.body = JSON.stringify(o.json);
  }
  const r = await fetch(path, { method: o.method || 'GET', headers: o.headers, body: o.body });
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (r.status === 401 && !token()) throw new Error(SIGN_IN);
  if (!r.ok) {
    const m = body && body.message ? body.message : (typeof body === 'string' ? body : r.statusText);
    const code = body && body.reason ? body.reason + ': ' : '';
    throw new Error('HTTP ' + r.status + ': ' + code + m);
  }
  return body;
}

// ------------------------------------------------------------ sign-in

function setupAuth() {
  const form = $('login'), shown = $('signed-in');
  const render = () => { const on = !!token(); form.hidden = on; shown.hidden = !on; };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('admin-token').value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $('admin-token').value = '';
    // The page's views depend on who reads them: load them again.
    location.reload();
  });
  $('logout').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  render();
}

// A server-sent event stream read with fetch (an EventSource cannot send
// the bearer token): calls on.open, on[event](data) and on.error; it
// reconnects after an error, from the start path given by `path()`.
function sse(path, on) {
  let stopped = false, ctl = null;
  const run = async () => {
    while (!stopped) {
      ctl = new AbortController();
      try {
        const r = await fetch(path(), { headers: authHeaders({ Accept: 'text/event-stream' }), signal: ctl.signal });
        if (!r.ok) throw new Error('HTTP ' + r.status);
        if (on.open) on.open();
        await readSse(r, (event, data) => { if (on[event]) on[event](data); });
      } catch (_) { /* reconnect below */ }
      if (stopped) return;
      if (on.error) on.error();
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  run();
  return { close() { stopped = true; if (ctl) ctl.abort(); } };
}

function proofLink(index) {
  if (index === null || index === undefined) return '';
  return el('a', { href: '/console/proof?index=' + index, 'aria-label': 'proof of entry ' + index, text: 'proof' });
}

// ------------------------------------------------------------ governance

function entryRow(e) {
  const outcome = e.outcome || '';
  const kind = outcome === 'allow' ? 'allow' : (outcome === 'deny' ? 'deny' : 'other');
  const tr = el('tr', { 'data-type': e.type, 'data-outcome': outcome, 'data-principal': e.principal || '', 'data-reason': e.reason || '', 'data-probe': e.probe ? 'probe' : '' },
    el('td', { text: e.index }),
    el('td', { text: time(e.time_ms) }),
    el('td', { class: 'mono', text: e.principal || '' }),
    el('td', { class: 'mono', text: (e.action || e.type) + (e.probe ? ' (probe)' : '') }),
    el('td', { class: 'mono', text: e.resource || '' }),
    el('td', {}, pill(outcome || e.type, kind)),
    el('td', {}, e.reason ? el('code', { text: e.reason }) : ''),
    el('td', {}, proofLink(e.index)));
  if (e.message) tr.title = e.message;
  return tr;
}

function matches(tr) {
  const type = $('f-type').value, outcome = $('f-outcome').value;
  const principal = $('f-principal').value.trim(), reason = $('f-reason').value.trim();
  const t = tr.dataset.type;
  if (type === 'decision' && t !== 'decision') return false;
  if (type === 'execution' && !t.startsWith('execution')) return false;
  if (type === 'revocation' && t !== 'revocation') return false;
  if (outcome && tr.dataset.outcome !== outcome) return false;
  // Allowed probes are hidden unless asked for; a denied one always shows.
  if (tr.dataset.probe && tr.dataset.outcome === 'allow' && !$('f-probes').checked) return false;
  if (principal && !tr.dataset.principal.includes(principal)) return false;
  if (reason && !tr.dataset.reason.includes(reason)) return false;
  return true;
}

function applyFilters() {
  const rows = $('decisions').tBodies[0].rows;
  let shown = 0;
  for (const tr of rows) { const m = matches(tr); tr.hidden = !m; if (m) shown++; }
  $('decisions-count').textContent = shown + ' of ' + rows.length + ' entries shown (the latest 500 are kept)';
}

async function loadPolicy() {
  const p = await api('/console/api/policy');
  $('policy-hash').textContent = p.active;
  $('policy-ids').textContent = (p.policy_ids || []).join(', ');
  const src = $('policy-source');
  src.replaceChildren();
  for (const [name, text] of Object.entries((p.source && p.source.policies) || {})) {
    src.append(el('h4', { text: name }), el('pre', { class: 'pre', text }));
  }
  const tb = $('activations').tBodies[0];
  tb.replaceChildren(...(p.activations || []).slice().reverse().map((a) => el('tr', {},
    el('td', { text: a.seq }), el('td', { text: time(a.time_ms) }),
    el('td', {}, el('code', { text: a.hash })), el('td', { class: 'mono', text: a.by }))));
}

async function loadRevocations() {
  const r = await api('/console/api/revocations');
  const tb = $('revocations').tBodies[0];
  const list = (r.revocations || []).slice().reverse();
  tb.replaceChildren(...list.map((x) => el('tr', {},
    el('td', { text: time(x.time_ms) }), el('td', { class: 'mono', text: x.target }),
    el('td', { text: x.kind }), el('td', { class: 'mono', text: x.by }), el('td', { text: x.reason }))));
  if (!list.length) tb.append(el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'no revocations' })));
}

async function governance() {
  needToken();
  for (const id of ['f-type', 'f-outcome', 'f-principal', 'f-reason']) $(id).addEventListener('input', applyFilters);
  $('f-probes').addEventListener('change', applyFilters);
  $('filters').addEventListener('submit', (e) => e.preventDefault());
  const tb = $('decisions').tBodies[0];
  const first = await api('/console/api/entries?limit=500');
  tb.replaceChildren(...first.entries.slice().reverse().map(entryRow));
  applyFilters();
  let from = first.size;
  const es = sse(() => '/console/api/stream?from=' + from, {
    open: () => { $('live-state').textContent = 'live'; $('live-state').classList.add('on'); },
    error: () => { $('live-state').textContent = 'reconnecting…'; $('live-state').classList.remove('on'); },
    entry: (data) => onEntry(data),
  });
  const onEntry = (e) => {
    if (typeof e.index === 'number') from = Math.max(from, e.index + 1);
    const tr = entryRow(e);
    tr.classList.add('fresh');
    tb.prepend(tr);
    while (tb.rows.length > 500) tb.deleteRow(tb.rows.length - 1);
    tr.hidden = !matches(tr);
    applyFilters();
    if (e.type === 'revocation') loadRevocations().catch((err) => status(err.message));
    if (e.type === 'policy_activation') loadPolicy().catch((err) => status(err.message));
  };
  window.addEventListener('pagehide', () => es.close());
  $('revoke-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = $('revoke-result');
    const body = { reason: $('revoke-reason').value || 'revoked from the console' };
    body[$('revoke-kind').value] = $('revoke-target').value.trim();
    try {
      const r = await api('/v1/revocations', { json: body, auth: true });
      out.textContent = 'Revoked ' + r.revoked.length + ' (entry ' + r.log_index + '): ' + r.revoked.join(', ');
    } catch (err) { out.textContent = 'Not revoked: ' + err.message; }
  });
  await Promise.all([loadPolicy(), loadRevocations()]);
}

// ------------------------------------------------------------ proof viewer

function checkItem(c) {
  const kind = c.ok === true ? 'ok' : (c.ok === false ? 'bad' : 'pending');
  const mark = c.ok === true ? '✓' : (c.ok === false ? '✗' : '…');
  const label = c.ok === true ? 'passed' : (c.ok === false ? 'failed' : 'not yet');
  return el('li', { class: kind, 'data-check': c.name },
    el('span', { class: 'mark', 'aria-label': label, text: mark }),
    el('span', { class: 'what' }, el('strong', { text: c.name }), c.reason ? ' ' : '',
      c.reason ? el('code', { class: 'reason', text: c.reason }) : '',
      el('br'), el('span', { class: 'muted', text: c.detail || '' })));
}

function showProof(r) {
  $('proof-out').hidden = false;
  const checks = (r.checks || []).concat((r.log && r.log.checks) || []);
  $('checks').replaceChildren(...checks.map(checkItem));
  $('claims').textContent = r.claims ? JSON.stringify(r.claims, null, 2) : '(no writ: a log entry was picked)';
  const log = r.log || {};
  $('entry').textContent = log.raw ? JSON.stringify(log.raw, null, 2) : '(none)';
  const path = log.path || [];
  $('path-intro').textContent = log.checkpoint
    ? 'Leaf hash ' + (log.leaf_hash || '') + ' of entry ' + log.index + ', ' + path.length + ' steps up to root ' + (log.root || '?') + ' of the checkpoint of size ' + log.checkpoint.size + '.'
    : 'No signed checkpoint yet.';
  $('path').tBodies[0].replaceChildren(...path.map((p, i) => el('tr', {},
    el('td', { text: i + 1 }), el('td', {}, el('code', { text: p.sibling })), el('td', { text: p.side }), el('td', {}, el('code', { text: p.result })))));
  $('checkpoint').textContent = log.checkpoint ? log.checkpoint.note : '(none)';
  $('signatures').replaceChildren(...(log.signatures || []).map((s) => checkItem({
    name: s.role + ' signature — ' + s.name + ' (key id ' + s.key_id + ')',
    ok: s.valid === null ? null : s.valid,
    detail: s.valid === null ? 'a key this server does not know' : (s.valid ? 'verifies' : 'does not verify'),
  })));
}

async function proof() {
  $('writ-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    status('');
    try { showProof(await api('/console/api/proof', { json: { writ: $('writ-input').value.trim() } })); } catch (err) { status(err.message); }
  });
  $('index-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    status('');
    const i = $('index-input').value;
    history.replaceState(null, '', '?index=' + encodeURIComponent(i));
    try { showProof(await api('/console/api/proof?index=' + encodeURIComponent(i))); } catch (err) { status(err.message); }
  });
  const q = new URLSearchParams(location.search);
  if (q.has('index')) {
    $('index-input').value = q.get('index');
    showProof(await api('/console/api/proof?index=' + encodeURIComponent(q.get('index'))));
  }
}

// ------------------------------------------------------------ health

function parseMetrics(text) {
  const out = { decisions: 0, buckets: [], count: 0 };
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.trim()) continue;
    const m = line.match(/^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+|\+Inf|NaN)/);
    if (!m) continue;
    const [, name, labels, value] = m;
    const v = Number(value);
    if (name === 'writ_decisions_total') out.decisions += v;
    else if (name === 'writ_decision_latency_seconds_bucket') {
      const le = (labels || '').match(/le="([^"]+)"/);
      if (le) out.buckets.push([le[1] === '+Inf' ? Infinity : Number(le[1]), v]);
    } else if (name === 'writ_decision_latency_seconds_count') out.count = v;
  }
  out.buckets.sort((a, b) => a[0] - b[0]);
  return out;
}

// histogram_quantile over the bucket increments between two samples.
function quantile(q, prev, cur) {
  const inc = cur.buckets.map(([le, c], i) => [le, c - ((prev.buckets[i] || [le, 0])[1])]);
  const total = inc.length ? inc[inc.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const [le, c] of inc) {
    if (c >= rank) {
      if (le === Infinity) return lower;
      const inBucket = c - below;
      return inBucket > 0 ? lower + (le - lower) * ((rank - below) / inBucket) : le;
    }
    lower = le; below = c;
  }
  return lower;
}

function chart(id, series, opts) {
  const box = $(id), W = 320, H = 140, L = 38, R = 8, T = 8, B = 20;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && Number.isFinite(v)));
  const max = Math.max(opts && opts.min ? opts.min : 0, ...all, 1e-9);
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const x = (i) => L + (i * (W - L - R)) / (n - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const kids = [];
  for (const f of [0, 0.5, 1]) {
    kids.push(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }));
    kids.push(svg('text', { x: 2, y: y(max * f) + 3, text: fmt(max * f) }));
  }
  kids.push(svg('text', { x: L, y: H - 4, text: (n * 2) + ' s ago' }), svg('text', { x: W - R - 18, y: H - 4, text: 'now' }));
  series.forEach((s, k) => {
    const pts = s.values.map((v, i) => (v === null || !Number.isFinite(v) ? null : x(i) + ',' + y(v))).filter(Boolean);
    if (pts.length) kids.push(svg('polyline', { class: 's' + k, points: pts.join(' ') }));
    const last = s.values.filter((v) => v !== null).slice(-1)[0];
    kids.push(svg('text', { x: L + 4 + k * 80, y: T + 9, class: 's' + k, text: s.name + ': ' + (last === undefined ? '–' : fmt(last)) }));
  });
  box.replaceChildren(...kids);
}

function fmt(v) {
  if (v === null || v === undefined) return '–';
  if (v >= 100) return String(Math.round(v));
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

async function health() {
  needToken();
  const samples = [];
  const MAX = 60;
  const tick = async () => {
    const [mesh, metricsText] = await Promise.all([api('/v1/mesh'), fetch('/metrics', { headers: authHeaders() }).then((r) => r.text())]);
    const now = performance.now();
    const m = parseMetrics(metricsText);
    const nodes = mesh.nodes || [];
    $('nodes').tBodies[0].replaceChildren(...nodes.map((n) => el('tr', { 'data-node': n.id },
      el('td', { class: 'mono', text: n.id + (n.self ? ' (this node)' : '') + (mesh.shared && n.leader ? ' · checkpoint leader' : '') + (n.alive === false ? ' · not reporting' : '') }),
      el('td', {}, el('code', { text: n.policy })),
      el('td', {}, pill(n.policy_fresh ? 'fresh' : 'stale', n.policy_fresh ? 'ok' : 'bad'), ' activated ' + time(n.policy_activated_ms)),
      el('td', { text: n.log_size }),
      el('td', { text: n.checkpoint_size === null ? 'none' : 'size ' + n.checkpoint_size }),
      el('td', { text: n.checkpoint_age_ms === null ? '–' : (n.checkpoint_age_ms / 1000).toFixed(1) + ' s' }),
      el('td', { text: n.revocation_hwm }))));
    const self = nodes.find((n) => n.self) || nodes[0] || {};
    const prev = samples[samples.length - 1];
    const s = { t: now, m, log: self.log_size, age: self.checkpoint_age_ms === null ? null : self.checkpoint_age_ms / 1000, rate: null, p50: null, p90: null, p99: null };
    if (prev) {
      const dt = (now - prev.t) / 1000;
      s.rate = dt > 0 ? Math.max(0, (m.decisions - prev.m.decisions) / dt) : null;
      const ms = (q) => { const v = quantile(q, prev.m, m); return v === null ? null : v * 1000; };
      s.p50 = ms(0.5); s.p90 = ms(0.9); s.p99 = ms(0.99);
    }
    samples.push(s);
    while (samples.length > MAX) samples.shift();
    chart('chart-rate', [{ name: 'rate', values: samples.map((x) => x.rate) }]);
    chart('chart-latency', [
      { name: 'p50', values: samples.map((x) => x.p50) },
      { name: 'p90', values: samples.map((x) => x.p90) },
      { name: 'p99', values: samples.map((x) => x.p99) }]);
    chart('chart-log', [{ name: 'entries', values: samples.map((x) => x.log) }]);
    chart('chart-age', [{ name: 'age', values: samples.map((x) => x.age) }]);
    const zero = { buckets: m.buckets.map(([le]) => [le, 0]) };
    const figures = [
      ['Decisions since start', m.decisions],
      ['Latency since start p50 / p90 / p99', [0.5, 0.9, 0.99].map((q) => { const v = quantile(q, zero, m); return v === null ? '–' : (v * 1000).toFixed(2) + ' ms'; }).join(' / ')],
      ['Samples', samples.length + ' (every 2 s)'],
    ];
    $('latest-figures').replaceChildren(...figures.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
    $('sample-info').textContent = 'updated ' + new Date().toISOString().slice(11, 19) + 'Z';
  };
  const loop = async () => { try { await tick(); status(''); } catch (e) { status(e.message); } setTimeout(loop, 2000); };
  await loop();
}

// ------------------------------------------------------------ lineage

const BOX_W = 190, BOX_H = 50, GAP_X = 20, GAP_Y = 36;

function layout(root) {
  // Leaves take consecutive slots; a parent sits over the middle of its children.
  let slot = 0;
  const nodes = [], edges = [];
  const walk = (n, depth, parent) => {
    const kids = n.children || [];
    const me = { n, depth };
    if (!kids.length) { me.x = slot++; } else {
      const xs = kids.map((c) => walk(c, depth + 1, me).x);
      me.x = (xs[0] + xs[xs.length - 1]) / 2;
    }
    nodes.push(me);
    if (parent) edges.push([parent, me]);
    return me;
  };
  walk(root, 0, null);
  // Edges were recorded before the parent's x was known: resolve now.
  return { nodes, edges, width: Math.max(1, slot), depth: Math.max(...nodes.map((x) => x.depth)) + 1 };
}

function statusClass(s) {
  if (s === 'running' || s === 'finished' || s === 'denied' || s === 'revoked') return s;
  if (s === 'exited') return 'finished';
  if (s && s.startsWith('revoked')) return 'revoked';
  if (s === 'issued' || s === 'expired') return 'issued';
  return 'finished';
}

function statusLabel(s) { return s === 'exited' ? 'finished' : s; }

async function revokeSubtree(jti, button) {
  const out = $('lineage-result');
  button.disabled = true;
  try {
    const r = await api('/v1/revocations', { json: { jti, reason: 'revoked from the lineage explorer' }, auth: true });
    out.textContent = 'Revoked ' + r.revoked.length + ' writ(s) (entry ' + r.log_index + '): ' + r.revoked.join(', ');
  } catch (err) { out.textContent = 'Not revoked: ' + err.message; button.disabled = false; }
  await showTree(jti).catch((e) => status(e.message));
}

let currentRoot = null;

async function showTree(jti) {
  const r = await api('/console/api/lineage/' + encodeURIComponent(jti));
  currentRoot = jti;
  $('tree-out').hidden = false;
  const { nodes, edges, width, depth } = layout(r.tree);
  const W = width * (BOX_W + GAP_X) + GAP_X, H = depth * (BOX_H + GAP_Y) + GAP_Y;
  const px = (m) => GAP_X + m.x * (BOX_W + GAP_X);
  const py = (m) => GAP_Y / 2 + m.depth * (BOX_H + GAP_Y);
  const g = $('tree');
  g.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  g.setAttribute('width', W);
  g.setAttribute('height', H);
  const kids = edges.map(([a, b]) => svg('path', { class: 'edge',
    d: 'M' + (px(a) + BOX_W / 2) + ',' + (py(a) + BOX_H) + ' C' + (px(a) + BOX_W / 2) + ',' + (py(a) + BOX_H + GAP_Y / 2) + ' ' + (px(b) + BOX_W / 2) + ',' + (py(b) - GAP_Y / 2) + ' ' + (px(b) + BOX_W / 2) + ',' + py(b) }));
  const rows = [];
  for (const m of nodes.slice().sort((a, b) => a.depth - b.depth || a.x - b.x)) {
    const n = m.n, st = statusClass(n.status);
    const res = String(n.resource || '').replace(/^Command::/, '');
    const label = statusLabel(n.status) + ': ' + res + (n.jti ? ' (writ ' + n.jti + ')' : '') + (n.reason ? ' ' + n.reason : '');
    const a = svg('a', { href: '/console/proof?index=' + n.log_index, class: 'n-' + st, 'aria-label': label + ', open its proof' },
      svg('title', { text: label }),
      svg('rect', { x: px(m), y: py(m), width: BOX_W, height: BOX_H, rx: 6 }),
      svg('text', { x: px(m) + 8, y: py(m) + 17, text: statusLabel(n.status).slice(0, 28) + (n.reason ? ' · ' + n.reason : '') }),
      svg('text', { x: px(m) + 8, y: py(m) + 32, text: short(res, 26) }),
      svg('text', { x: px(m) + 8, y: py(m) + 45, text: n.jti ? 'writ ' + short(n.jti, 16) : 'refused (entry ' + n.log_index + ')' }));
    kids.push(a);
    const canRevoke = n.jti && st !== 'revoked';
    const btn = n.jti ? el('button', { type: 'button', class: 'danger', 'data-jti': n.jti, disabled: !canRevoke, text: 'Revoke subtree' }) : '';
    if (btn) btn.addEventListener('click', () => revokeSubtree(n.jti, btn));
    rows.push(el('tr', { 'data-jti': n.jti || '', 'data-status': statusLabel(n.status) },
      el('td', { text: m.depth }), el('td', {}, el('span', { class: 'st st-' + st, text: statusLabel(n.status) })),
      el('td', { class: 'mono', text: n.principal }), el('td', { class: 'mono', text: res }),
      el('td', { class: 'mono', text: n.jti || (n.reason || 'denied') }),
      el('td', {}, proofLink(n.log_index)), el('td', {}, btn)));
  }
  g.replaceChildren(...kids);
  $('tree-nodes').tBodies[0].replaceChildren(...rows);
}

async function lineage() {
  $('lineage-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const j = $('jti-input').value.trim();
    history.replaceState(null, '', '?jti=' + encodeURIComponent(j));
    showTree(j).catch((err) => status(err.message));
  });
  needToken();
  const list = await api('/console/api/executions');
  const seen = new Set();
  const items = [];
  for (const x of list.executions) {
    const root = x.root || x.jti;
    if (seen.has(root)) continue;
    seen.add(root);
    items.push(el('li', {}, el('a', { href: '?jti=' + encodeURIComponent(root), text: root }),
      ' ', el('span', { class: 'muted', text: 'tree root; latest start ' + time(x.time_ms) + ': ' + (x.resource || '') })));
  }
  $('recent').replaceChildren(...(items.length ? items : [el('li', { class: 'muted', text: 'no executions yet' })]));
  const q = new URLSearchParams(location.search);
  if (q.has('jti')) { $('jti-input').value = q.get('jti'); await showTree(q.get('jti')); }
  // Statuses change (runs finish, get revoked): refresh the tree.
  setInterval(() => { if (currentRoot) showTree(currentRoot).catch((e) => status(e.message)); }, 3000);
}

// ------------------------------------------------------------ demo

async function readSse(response, onEvent) {
  const reader = response.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i); buf = buf.slice(i + 2);
      let event = 'message', data = '';
      for (const line of frame.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
      if (data) onEvent(event, JSON.parse(data));
    }
  }
}

async function demo() {
  const button = $('demo-run');
  button.addEventListener('click', async () => {
    const list = $('demo-steps'), note = $('demo-note');
    if (!token()) { status('Sign in with an administrator token first (top right).'); $('admin-token').focus(); return; }
    status('');
    button.disabled = true;
    list.replaceChildren();
    note.textContent = 'running…';
    try {
      const r = await fetch('/console/api/demo', { method: 'POST', headers: authHeaders() });
      if (!r.ok) { const b = await r.json().catch(() => ({})); throw new Error('HTTP ' + r.status + ': ' + (b.message || r.statusText)); }
      await readSse(r, (event, d) => {
        if (event === 'step') {
          list.append(el('li', { class: d.ok ? 'ok' : 'bad', 'data-outcome': d.outcome },
            el('strong', { text: d.title }), el('br'),
            'expected ', el('code', { text: d.expected }), ', got ', pill(d.outcome, d.ok ? 'ok' : 'bad'),
            ' ', proofLink(d.log_index),
            el('br'), el('span', { class: 'muted', text: d.detail })));
        } else if (event === 'note') note.textContent = d.note;
        else if (event === 'error') note.textContent = 'The demo stopped: ' + d.error;
        else if (event === 'done') note.textContent = 'Done: ' + d.steps + ' steps, ' + list.querySelectorAll('li.bad').length + ' unexpected.';
      });
    } catch (err) { note.textContent = ''; status(err.message); }
    button.disabled = false;
  });
}

// ------------------------------------------------------------ maturity

async function maturity() {
  needToken();
  const run = async () => {
    $('level').textContent = 'assessing…';
    const r = await api('/console/api/assess');
    const a = r.assessment;
    $('level').replaceChildren(el('strong', { text: 'Level ' + a.level }), a.name);
    $('level').dataset.level = a.level;
    $('criteria').tBodies[0].replaceChildren(...a.criteria.map((c) => el('tr', { 'data-met': String(c.met) },
      el('td', { text: c.level }), el('td', { text: c.name }),
      el('td', {}, pill(c.met ? 'met' : 'not met', c.met ? 'ok' : 'bad')), el('td', { text: c.evidence }))));
  };
  $('assess-run').addEventListener('click', () => run().catch((e) => status(e.message)));
  await run();
}

// ------------------------------------------------------------ start

const PAGES = { governance, proof, health, lineage, demo, maturity };

document.addEventListener('DOMContentLoaded', () => {
  setupAuth();
  const page = PAGES[document.body.dataset.page];
  if (page) page().catch((e) => status(e.message));
});
