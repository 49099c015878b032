// codex-gate dashboard: plain JS, no build step. Every string from the server goes into the
// page as text (never as HTML); charts are SVG drawn here. Views poll every 4 s while visible.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const POLL_MS = 4000;
let csrf = null;
let current = null; // the view on screen: {refresh?}

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  put(e, attrs, kids);
  return e;
}
function s(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  put(e, attrs, kids);
  return e;
}
function put(e, attrs, kids) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.setAttribute('class', v);
    else if (k === 'style') e.style.cssText = v; // CSSOM: allowed by the CSP, unlike a style attribute
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
}

async function api(path, opts = {}) {
  const init = { method: opts.method || 'GET', headers: {}, credentials: 'same-origin' };
  if (opts.body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  if (init.method !== 'GET' && csrf) init.headers['x-csrf-token'] = csrf;
  const r = await fetch(path, init);
  let j = null;
  try { j = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const err = new Error((j && j.error && j.error.message) || `HTTP ${r.status}`);
    err.status = r.status;
    if (r.status === 401 || (r.status === 403 && path.startsWith('/api/') && !(j && j.error && j.error.code === 'csrf_failed'))) {
      boot();
    }
    throw err;
  }
  return j;
}

// ---- formatting
const nf = new Intl.NumberFormat();
function num(n) {
  n = Number(n || 0);
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + 'B';
  if (a >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return nf.format(Math.round(n));
}
function usd(n) { n = Number(n || 0); return n >= 100 ? '$' + nf.format(Math.round(n)) : '$' + n.toFixed(n >= 1 ? 2 : 4); }
function ms(n) { if (n === null || n === undefined) return '–'; n = Number(n); return n >= 1000 ? (n / 1000).toFixed(2) + ' s' : (n >= 10 ? Math.round(n) : n.toFixed(2)) + ' ms'; }
function pct(a, b) { return b ? Math.round((100 * a) / b) + '%' : '–'; }
function when(tsMs) { const d = new Date(tsMs); return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' }); }
function ago(tsMs) {
  const s = Math.max(0, Math.round((Date.now() - tsMs) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}
function span(sec) {
  sec = Math.max(0, Math.round(sec));
  const d = Math.floor(sec / 86400), hh = Math.floor((sec % 86400) / 3600), mm = Math.floor((sec % 3600) / 60), ss = sec % 60;
  if (d) return `${d}d ${hh}h ${mm}m`;
  if (hh) return `${hh}h ${String(mm).padStart(2, '0')}m`;
  return `${mm}m ${String(ss).padStart(2, '0')}s`;
}
// A countdown to unix second `at`, kept current by the ticker below.
function countdown(at, prefix) {
  const left = at - Date.now() / 1000;
  prefix = prefix || 'resets in ';
  return h('span', { class: 'countdown muted', 'data-at': at, 'data-prefix': prefix }, left > 0 ? prefix + span(left) : 'reset');
}
function pill(text, cls) { return h('span', { class: 'pill ' + (cls || text) }, text); }
function stat(label, value, sub) { return h('div', { class: 'stat' }, h('b', {}, value), h('span', {}, label), sub ? h('div', { class: 'muted' }, sub) : null); }
function bar(used) {
  const u = Math.max(0, Math.min(100, Number(used || 0)));
  return h('div', { class: 'bar', title: u.toFixed(1) + '% used' }, h('i', { class: u >= 90 ? 'bad' : u >= 70 ? 'warn' : '', style: `width:${u}%` }));
}
function table(head, rows) {
  return h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', { class: c.startsWith('#') ? 'num' : '' }, c.replace(/^#/, ''))))), h('tbody', {}, rows));
}
function errorBox(e) { return h('p', { class: 'err' }, String(e.message || e)); }

// ---- charts: stacked bars over time, one rect per layer and bucket (a <title> per bucket)
function chart(series, o) {
  const W = 640, H = 160, L = 44, B = 18, T = 6;
  const byStart = new Map(series.map((b) => [b.start_ms, b]));
  const first = Math.floor(o.since / o.bucket) * o.bucket;
  const buckets = [];
  for (let t = first; t <= o.now; t += o.bucket) buckets.push(byStart.get(t) || { start_ms: t });
  const total = (b) => o.layers.reduce((sum, l) => sum + Math.max(0, l.value(b) || 0), 0);
  const max = Math.max(1e-9, ...buckets.map(total));
  const bw = (W - L) / Math.max(1, buckets.length);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': o.label, 'data-chart': o.id });
  for (const f of [0, 0.5, 1]) {
    const y = T + (H - B - T) * (1 - f);
    svg.append(s('line', { x1: L, x2: W, y1: y, y2: y }), s('text', { x: L - 4, y: y + 3, 'text-anchor': 'end' }, o.fmt(max * f)));
  }
  buckets.forEach((b, i) => {
    let y = H - B;
    const g = s('g', { 'data-bucket': b.start_ms });
    for (const l of o.layers) {
      const v = Math.max(0, l.value(b) || 0);
      if (!v) continue;
      const hgt = ((H - B - T) * v) / max;
      y -= hgt;
      g.append(s('rect', { x: L + i * bw + 0.5, y, width: Math.max(1, bw - 1), height: hgt, fill: l.color, 'data-value': v }));
    }
    g.append(s('title', {}, `${when(b.start_ms)}\n` + o.layers.map((l) => `${l.label}: ${o.fmt(l.value(b) || 0)}`).join('\n')));
    svg.append(g);
  });
  const ticks = Math.min(6, buckets.length);
  for (let k = 0; k < ticks; k++) {
    const i = Math.floor((k * (buckets.length - 1)) / Math.max(1, ticks - 1));
    const d = new Date(buckets[i].start_ms);
    const label = o.bucket >= 86400000 ? d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    svg.append(s('text', { x: L + i * bw + bw / 2, y: H - 4, 'text-anchor': 'middle' }, label));
  }
  const legend = h('div', { class: 'legend' }, o.layers.map((l) => h('span', {}, h('i', { style: `background:${l.color}` }), l.label)));
  return h('div', { class: 'card' }, h('h2', {}, o.label), svg, legend);
}
const css = (v) => getComputedStyle(document.documentElement).getPropertyValue(v).trim();

// ---- views
const views = {};

views.overview = (main) => {
  let win = sessionStorage.getItem('cg.window') || '24h';
  const tabs = h('div', { class: 'row tabs' });
  const body = h('div', {});
  main.append(h('div', { class: 'row', style: 'justify-content:space-between;margin-bottom:12px' }, h('h2', {}, 'Overview'), tabs), body);
  const drawTabs = () => {
    tabs.replaceChildren(...['1h', '24h', '7d', '30d'].map((w) => h('button', { class: w === win ? 'on' : '', onclick: () => { win = w; sessionStorage.setItem('cg.window', w); drawTabs(); refresh(); } }, w)));
  };
  drawTabs();
  async function refresh() {
    const o = await api('/api/overview?window=' + win);
    const t = o.totals, tm = o.timings;
    const frame = { since: o.since_ms, now: o.now_ms, bucket: o.bucket_ms };
    const uncached = (b) => (b.input_tokens || 0) - (b.cached_tokens || 0);
    body.replaceChildren(
      h('div', { class: 'stats', id: 'totals' },
        stat('requests', num(t.requests)),
        stat('errors', num(t.errors), pct(t.errors, t.requests) + ' of requests'),
        stat('input tokens', num(t.input_tokens), pct(t.cached_tokens, t.input_tokens) + ' cached'),
        stat('output tokens', num(t.output_tokens), num(t.reasoning_tokens) + ' reasoning'),
        stat('cost', usd(t.cost_usd), 'API-equivalent'),
        stat('time to first token', ms(tm.ttfb_ms[0]), `p90 ${ms(tm.ttfb_ms[1])} · p99 ${ms(tm.ttfb_ms[2])}`),
        stat('gateway overhead', ms(tm.overhead_ms[0]), `p90 ${ms(tm.overhead_ms[1])} · p99 ${ms(tm.overhead_ms[2])}`),
        stat('pool accounts', `${o.live.accounts_usable}/${o.live.accounts}`, `usable · ${o.live.in_flight} in flight`)),
      h('div', { class: 'grid' },
        chart(o.series, { ...frame, id: 'requests', label: 'Requests', fmt: num, layers: [
          { label: 'answered', color: css('--ok'), value: (b) => (b.requests || 0) - (b.errors || 0) },
          { label: 'errors', color: css('--bad'), value: (b) => b.errors } ] }),
        chart(o.series, { ...frame, id: 'tokens', label: 'Tokens', fmt: num, layers: [
          { label: 'input', color: css('--in'), value: uncached },
          { label: 'cached input', color: css('--cached'), value: (b) => b.cached_tokens },
          { label: 'output', color: css('--out'), value: (b) => (b.output_tokens || 0) - (b.reasoning_tokens || 0) },
          { label: 'reasoning', color: css('--rsn'), value: (b) => b.reasoning_tokens } ] }),
        chart(o.series, { ...frame, id: 'cost', label: 'Cost (USD)', fmt: usd, layers: [
          { label: 'cost', color: css('--accent'), value: (b) => b.cost_usd } ] })),
      h('div', { class: 'grid' },
        h('div', { class: 'card' }, h('h2', {}, 'Top keys'), topTable(o.top_keys, (g) => g.name || (g.group ? g.group : '(no key)'), (g) => (g.group ? 'key=' + encodeURIComponent(g.group) : 'key=none'))),
        h('div', { class: 'card' }, h('h2', {}, 'Top models'), topTable(o.top_models, (g) => g.group, (g) => 'model=' + encodeURIComponent(g.group)))),
      h('p', { class: 'muted' }, `Percentiles over the newest ${num(tm.sample)} requests of the window. Updated ${new Date(o.now_ms).toLocaleTimeString()}.`));
  }
  return { refresh };
};

function topTable(lines, name, filter) {
  if (!lines.length) return h('p', { class: 'muted' }, 'No traffic in this window.');
  return table(['name', '#requests', '#tokens', '#errors', '#cost'], lines.map((l) =>
    h('tr', { class: 'click', onclick: () => { location.hash = '#/requests?' + filter(l); } },
      h('td', {}, name(l)), h('td', { class: 'num' }, num(l.sums.requests)),
      h('td', { class: 'num' }, num(l.sums.input_tokens + l.sums.output_tokens)),
      h('td', { class: 'num' }, num(l.sums.errors)), h('td', { class: 'num' }, usd(l.sums.cost_usd)))));
}

views.accounts = (main) => {
  const list = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  const add = h('div', { class: 'card', id: 'add-account' });
  const flow = h('div', { id: 'login-flow' });
  const decisions = h('div', { class: 'card' });
  main.append(h('h2', {}, 'Accounts'), list, add, decisions);
  const file = h('input', { type: 'file', accept: '.json,application/json', id: 'import-file' });
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    try {
      const auth = JSON.parse(await f.text());
      const r = await api('/api/accounts/import', { method: 'POST', body: auth });
      flow.replaceChildren(h('p', {}, `Imported ${r.email || r.id} (${r.plan_type || 'plan unknown'}).`));
      refresh();
    } catch (e) { flow.replaceChildren(errorBox(e)); }
    file.value = '';
  });
  add.append(h('h2', {}, 'Add an account'),
    h('div', { class: 'row' },
      h('button', { class: 'primary', id: 'login-browser', onclick: () => login('browser') }, 'Sign in with ChatGPT'),
      h('button', { id: 'login-device', onclick: () => login('device') }, 'Use a device code'),
      h('label', {}, 'or import a Codex auth.json', file)),
    flow);
  async function login(mode) {
    flow.replaceChildren(h('p', { class: 'muted' }, 'Starting…'));
    let r;
    try { r = await api('/api/accounts/login', { method: 'POST', body: { mode } }); } catch (e) { flow.replaceChildren(errorBox(e)); return; }
    const state = h('p', { class: 'muted', id: 'login-state' }, 'Waiting for the sign-in to finish…');
    if (r.mode === 'browser') {
      flow.replaceChildren(h('p', {}, 'Open the sign-in page and finish there; it returns to this machine on port ' + r.callback_port + '. ',
        h('a', { href: r.authorize_url, target: '_blank', rel: 'noopener noreferrer', id: 'login-link' }, 'Open the ChatGPT sign-in page')), state);
    } else {
      flow.replaceChildren(h('p', {}, 'On any device, open ', h('a', { href: r.verification_url, target: '_blank', rel: 'noopener noreferrer' }, r.verification_url), ' and enter the code:'),
        h('pre', { id: 'device-code', style: 'font-size:20px' }, r.user_code), state);
    }
    const started = Date.now();
    const poll = async () => {
      if (!flow.isConnected) return;
      try {
        const st = await api('/api/accounts/login/' + encodeURIComponent(r.id));
        if (st.state === 'done') { state.textContent = `Added ${st.email || st.account} to the pool.`; state.className = ''; refresh(); return; }
        if (st.state === 'failed') { state.textContent = 'The sign-in failed: ' + st.error; state.className = 'err'; return; }
      } catch (e) { state.textContent = String(e.message); }
      if (Date.now() - started < 15 * 60000) setTimeout(poll, 1500);
    };
    setTimeout(poll, 1000);
  }
  const act = async (path, method, again) => {
    try { await api(path, { method }); } catch (e) { alert(e.message); }
    if (again) refresh();
  };
  function win(w, name) {
    if (!w) return h('td', { class: 'muted' }, '–');
    return h('td', {}, h('div', { class: 'row', style: 'gap:6px;align-items:center' }, bar(w.used_percent), h('span', {}, Math.round(w.used_percent) + '%')),
      w.reset_at ? countdown(w.reset_at) : h('span', { class: 'muted' }, name));
  }
  async function refresh() {
    const p = await api('/api/pool');
    if (!p.accounts.length) {
      list.replaceChildren(h('h2', {}, 'Pool'), h('p', { class: 'muted' }, 'No accounts yet. Add one below; Codex and every client then share it.'));
    } else {
      const now = Date.now() / 1000;
      list.replaceChildren(h('h2', {}, `Pool · ${p.accounts.length} accounts · strategy ${p.strategy}`),
        table(['account', 'plan', 'status', '5-hour window', 'weekly window', 'cooldown', '#in flight', 'last error', ''], p.accounts.map((a) => {
          const rl = a.rate_limit || {};
          const cooling = a.cooldown_until && a.cooldown_until > now;
          return h('tr', { 'data-account': a.id },
            h('td', {}, h('div', {}, a.email || a.id), h('div', { class: 'muted' }, a.id)),
            h('td', {}, a.plan_type || '–'),
            h('td', {}, pill(cooling && a.status === 'active' ? 'cooling' : a.status), a.status_reason ? h('div', { class: 'muted' }, a.status_reason) : null),
            win(rl.primary_window, '5 h'), win(rl.secondary_window, 'week'),
            h('td', {}, cooling ? [countdown(a.cooldown_until, 'ends in '), a.cooldown_reason ? h('div', { class: 'muted' }, a.cooldown_reason) : null] : h('span', { class: 'muted' }, '–')),
            h('td', { class: 'num' }, a.in_flight),
            h('td', {}, a.last_error ? [h('div', {}, a.last_error.code), h('div', { class: 'muted' }, ago(a.last_error.ts_ms))] : h('span', { class: 'muted' }, '–')),
            h('td', { class: 'row' },
              a.status === 'paused'
                ? h('button', { onclick: () => act(`/api/accounts/${encodeURIComponent(a.id)}/resume`, 'POST', true) }, 'Resume')
                : h('button', { onclick: () => act(`/api/accounts/${encodeURIComponent(a.id)}/pause`, 'POST', true) }, 'Pause'),
              a.status === 'reauth_required' ? h('button', { class: 'primary', onclick: () => login('browser') }, 'Sign in again') : null,
              h('button', { class: 'danger', onclick: () => { if (confirm(`Remove ${a.email || a.id} from the pool?`)) act(`/api/accounts/${encodeURIComponent(a.id)}`, 'DELETE', true); } }, 'Remove')));
        })));
    }
    const d = (p.decisions || []).slice(0, 15);
    decisions.replaceChildren(h('h2', {}, 'Recent routing decisions'), d.length
      ? table(['when', 'account', 'why'], d.map((x) => h('tr', {}, h('td', {}, ago(x.ts_ms)), h('td', {}, x.account), h('td', {}, x.reason))))
      : h('p', { class: 'muted' }, 'None yet.'));
  }
  return { refresh };
};

function snippets(key, base) {
  const codex = `# ~/.codex/config.toml (or run: codex-gate setup codex)\nmodel_provider = "codex-gate"\n\n[model_providers.codex-gate]\nname = "codex-gate"\nbase_url = "${base}"\nwire_api = "responses"\nenv_key = "CODEX_GATE_API_KEY"\n\n# and in your shell profile:\nexport CODEX_GATE_API_KEY=${key}`;
  const openclaw = `// openclaw.json → models.providers (or run: codex-gate setup openclaw)\n"codex-gate": {\n  "baseUrl": "${base}",\n  "apiKey": "${key}",\n  "api": "openai-responses"\n}`;
  const sdk = `from openai import OpenAI\nclient = OpenAI(base_url="${base}", api_key="${key}")`;
  return [['Codex', codex], ['OpenClaw', openclaw], ['OpenAI SDK', sdk]].map(([n, t]) => h('div', {}, h('h2', {}, n), h('pre', { 'data-snippet': n }, t)));
}

views.keys = (main) => {
  const created = h('div', { id: 'created-key' });
  const list = h('div', { class: 'card' });
  const detail = h('div', { id: 'key-detail' });
  const f = (name, label, attrs) => h('label', {}, label, h('input', { name, ...attrs }));
  const form = h('form', { class: 'row', id: 'create-key' },
    f('name', 'name', { required: true, placeholder: 'laptop-codex' }),
    f('models', 'models (comma-separated, * suffix)', { placeholder: 'all' }),
    f('rpm', 'requests/min', { type: 'number', min: 1 }),
    f('tpm', 'tokens/min', { type: 'number', min: 1 }),
    f('concurrency', 'concurrent', { type: 'number', min: 1 }),
    f('budget_usd', 'budget USD', { type: 'number', min: 0, step: 'any' }),
    h('label', {}, 'per', h('select', { name: 'budget_period' }, ['day', 'week', 'month'].map((p) => h('option', { value: p }, p)))),
    f('expires', 'expires', { placeholder: 'never, 90d, 2027-01-31' }),
    h('button', { class: 'primary', type: 'submit' }, 'Create key'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    const body = { name: d.get('name') };
    const models = String(d.get('models') || '').split(',').map((m) => m.trim()).filter(Boolean);
    if (models.length) body.models = models;
    for (const k of ['rpm', 'tpm', 'concurrency']) if (d.get(k)) body[k] = parseInt(d.get(k), 10);
    if (d.get('budget_usd')) { body.budget_usd = parseFloat(d.get('budget_usd')); body.budget_period = d.get('budget_period'); }
    if (d.get('expires')) body.expires = d.get('expires');
    try {
      const k = await api('/api/keys', { method: 'POST', body });
      showSecret(k, 'Created');
      form.reset();
      refresh();
    } catch (e) { created.replaceChildren(errorBox(e)); }
  });
  function showSecret(k, what) {
    const base = location.origin + '/v1';
    const copy = h('button', { onclick: async () => { try { await navigator.clipboard.writeText(k.key); copy.textContent = 'Copied'; } catch (_) { copy.textContent = 'Select and copy it'; } } }, 'Copy');
    created.replaceChildren(h('div', { class: 'card secret' },
      h('h2', {}, `${what} ${k.name}: this is the only time the key is shown`),
      h('div', { class: 'row' }, h('pre', { id: 'secret', style: 'flex:1' }, k.key), copy),
      h('div', { class: 'grid' }, snippets(k.key, base)),
      h('button', { onclick: () => created.replaceChildren() }, 'Done: hide it')));
  }
  const limits = (p) => [p.models && p.models.length ? 'models ' + p.models.join(', ') : null, p.rpm ? p.rpm + ' rpm' : null, p.tpm ? num(p.tpm) + ' tpm' : null,
    p.concurrency ? p.concurrency + ' concurrent' : null, p.budget_usd !== undefined ? `${usd(p.budget_usd)}/${p.budget_period || 'month'}` : null,
    p.pool_share ? p.pool_share + '% of pool' : null].filter(Boolean).join(' · ') || 'no limits';
  async function showKey(k) {
    const o = await api('/api/overview?window=7d&key=' + encodeURIComponent(k.id));
    detail.replaceChildren(h('div', { class: 'card' }, h('h2', {}, `${k.name}: last 7 days`),
      h('div', { class: 'stats' }, stat('requests', num(o.totals.requests)), stat('tokens', num(o.totals.input_tokens + o.totals.output_tokens)), stat('cost', usd(o.totals.cost_usd)), stat('errors', num(o.totals.errors))),
      chart(o.series, { since: o.since_ms, now: o.now_ms, bucket: o.bucket_ms, id: 'key-requests', label: 'Requests per hour', fmt: num, layers: [{ label: 'requests', color: css('--accent'), value: (b) => b.requests }] }),
      h('a', { href: '#/requests?key=' + encodeURIComponent(k.id) }, 'This key’s requests →')));
  }
  main.append(h('h2', {}, 'Client keys'), h('div', { class: 'card' }, h('h2', {}, 'New key'), form), created, list, detail);
  async function refresh() {
    const r = await api('/api/keys');
    if (!r.keys.length) {
      list.replaceChildren(h('p', { class: 'muted' }, 'No keys yet: the gateway serves loopback clients without one. Once a key exists, every client needs one.'));
      return;
    }
    list.replaceChildren(table(['name', 'key', 'state', 'limits', 'now', 'created', ''], r.keys.map((k) => {
      const u = k.usage || {};
      return h('tr', { 'data-key': k.id },
        h('td', {}, h('button', { class: 'link', onclick: () => showKey(k) }, k.name), k.admin ? h('span', { class: 'muted' }, ' admin') : null),
        h('td', {}, h('code', {}, k.prefix)), h('td', {}, pill(k.state)), h('td', {}, limits(k.policy || {})),
        h('td', { class: 'muted' }, u.rpm_used !== undefined ? `${u.rpm_used} req/min` : ''),
        h('td', { class: 'muted' }, ago(k.created_ms)),
        h('td', { class: 'row' }, k.state === 'revoked' ? null : [
          h('button', { onclick: async () => { if (!confirm(`Rotate ${k.name}? The old key stops working now.`)) return; try { showSecret(await api(`/api/keys/${k.id}/rotate`, { method: 'POST' }), 'Rotated'); } catch (e) { alert(e.message); } refresh(); } }, 'Rotate'),
          h('button', { class: 'danger', onclick: async () => { if (!confirm(`Revoke ${k.name}?`)) return; try { await api(`/api/keys/${k.id}`, { method: 'DELETE' }); } catch (e) { alert(e.message); } refresh(); } }, 'Revoke')]));
    })));
  }
  return { refresh };
};

views.requests = (main, params) => {
  const f = Object.fromEntries(params);
  const rows = h('tbody', {});
  const more = h('button', { hidden: true }, 'Older requests');
  let next = null;
  const input = (name, label, ph) => h('label', {}, label, h('input', { name, value: f[name] || '', placeholder: ph || 'any' }));
  const form = h('form', { class: 'row', id: 'filters' },
    input('key', 'key id', 'any, none'), input('model', 'model'), input('target', 'target'), input('account', 'account'),
    h('label', {}, 'status', h('select', { name: 'status' }, [['', 'all'], ['ok', 'ok'], ['error', 'errors'], ['429', '429'], ['499', '499 (client left)'], ['502', '502'], ['503', '503']].map(([v, t]) => h('option', { value: v, selected: f.status === v }, t)))),
    h('label', {}, 'since', h('select', { name: 'since' }, [['', 'all'], ['1h', 'last hour'], ['24h', 'last day'], ['7d', 'last week']].map(([v, t]) => h('option', { value: v, selected: f.since === v }, t)))),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = '#/requests?' + q;
  });
  const query = (before) => {
    const q = new URLSearchParams();
    for (const k of ['key', 'model', 'target', 'account', 'status']) if (f[k]) q.set(k, f[k]);
    const span = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 }[f.since];
    if (span) q.set('since_ms', String(Date.now() - span));
    if (before) q.set('before', before);
    return q;
  };
  const line = (r) => h('tr', { class: 'click', 'data-request': r.id, onclick: () => { location.hash = '#/request/' + encodeURIComponent(r.id); } },
    h('td', {}, when(r.ts_ms)), h('td', {}, r.model, h('div', { class: 'muted' }, r.target)),
    h('td', {}, r.key_name || (r.key_id ? r.key_id : h('span', { class: 'muted' }, '–'))), h('td', {}, r.account_id || h('span', { class: 'muted' }, '–')),
    h('td', {}, pill(String(r.status), r.error_code ? 'bad' : 'ok'), r.error_code ? h('div', { class: 'muted' }, r.error_code) : null),
    h('td', { class: 'num' }, num(r.input_tokens), h('div', { class: 'muted' }, num(r.cached_tokens) + ' cached')),
    h('td', { class: 'num' }, num(r.output_tokens)), h('td', { class: 'num' }, usd(r.cost_usd)),
    h('td', { class: 'num' }, ms(r.ttfb_ms)), h('td', { class: 'num' }, ms(r.overhead_ms)), h('td', { class: 'num' }, r.attempts));
  more.addEventListener('click', async () => {
    const r = await api('/api/requests?' + query(next));
    rows.append(...r.requests.map(line));
    next = r.next; more.hidden = !next;
  });
  main.append(h('h2', {}, 'Requests'), h('div', { class: 'card' }, form),
    h('div', { class: 'card' }, h('table', { id: 'request-log' }, h('thead', {}, h('tr', {}, ['when', 'model → target', 'key', 'account', 'status', 'input', 'output', 'cost', 'first byte', 'overhead', 'tries'].map((c) => h('th', {}, c)))), rows), more));
  async function refresh() {
    if (next && rows.children.length > 50) return; // the reader paged back: leave the page alone
    const r = await api('/api/requests?' + query());
    rows.replaceChildren(...r.requests.map(line));
    if (!r.requests.length) rows.append(h('tr', {}, h('td', { colspan: 11, class: 'muted' }, 'No requests match.')));
    next = r.next; more.hidden = !next;
  }
  return { refresh };
};

views.request = async (main, params, id) => {
  const { request: r, skipped } = await api('/api/requests/' + encodeURIComponent(id));
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  main.append(h('p', {}, h('a', { href: '#/requests' }, '← Requests')), h('h2', {}, 'Request ' + r.id),
    h('div', { class: 'grid' },
      h('div', { class: 'card' }, h('dl', { id: 'request-detail' },
        row('when', when(r.ts_ms)), row('API', r.api + (r.stream ? ' (stream)' : '')), row('model', r.model), row('route', r.route),
        row('served by', r.target), row('account', r.account_id || '–'), row('key', r.key_name || r.key_id || '–'),
        row('status', [pill(String(r.status), r.error_code ? 'bad' : 'ok'), r.error_code ? ' ' + r.error_code : '']))),
      h('div', { class: 'card' }, h('dl', {},
        row('input tokens', `${num(r.input_tokens)} (${num(r.cached_tokens)} cached)`), row('output tokens', `${num(r.output_tokens)} (${num(r.reasoning_tokens)} reasoning)`),
        row('cost', usd(r.cost_usd)), row('first byte', ms(r.ttfb_ms)), row('total', ms(r.latency_ms)), row('gateway overhead', ms(r.overhead_ms)), row('attempts', r.attempts)))),
    h('div', { class: 'card' }, h('h2', {}, 'Attempts'), r.trail.length
      ? table(['#', 'target', 'account', 'why', '#sent at', '#took', 'outcome'], r.trail.map((a, i) => h('tr', { 'data-attempt': i },
        h('td', {}, i + 1), h('td', {}, a.target), h('td', {}, a.account || '–'), h('td', {}, a.why + (a.pick ? '; account: ' + a.pick.why + ' (' + a.pick.usable + ' of ' + a.pick.of + ' accounts usable)' : '')), h('td', { class: 'num' }, '+' + ms(a.at_ms)), h('td', { class: 'num' }, ms(a.ms)),
        h('td', {}, a.error ? pill(a.error, 'bad') : pill('answered', 'ok')))))
      : h('p', { class: 'muted' }, 'No upstream was tried (the gateway answered itself).'),
    skipped.length ? [h('h2', { style: 'margin-top:12px' }, 'Not tried'), table(['target', 'why'], skipped.map((x) => h('tr', {}, h('td', {}, x.target), h('td', {}, x.why))))] : null));
  return {};
};

views.routes = (main) => {
  const body = h('div', {});
  main.append(h('h2', {}, 'Routes & providers'), body);
  async function refresh() {
    const r = await api('/api/routes');
    const health = new Map(r.targets.map((t) => [t.target, t.health]));
    body.replaceChildren(
      h('div', { class: 'card' }, h('h2', {}, `Routes · ${num(r.failovers)} failovers since start`), r.routes.length
        ? table(['model', 'targets, in order', 'fallback'], r.routes.map((x) => h('tr', {}, h('td', {}, x.model),
          h('td', {}, x.targets.map((t) => h('span', { style: 'margin-right:10px' }, t, ' ', pill(health.get(t) || 'idle')))), h('td', {}, x.fallback ? 'yes' : 'no'))))
        : h('p', { class: 'muted' }, 'No routes: every model goes to the pool.')),
      h('div', { class: 'card' }, h('h2', {}, 'Targets'), table(['target', 'health (15 min)', '#requests (15 min)', '#errors (15 min)', '#answered', '#failed attempts', 'errors since start'],
        r.targets.map((t) => h('tr', { 'data-target': t.target }, h('td', {}, t.target), h('td', {}, pill(t.health)), h('td', { class: 'num' }, t.recent_requests), h('td', { class: 'num' }, t.recent_errors),
          h('td', { class: 'num' }, num(t.answered)), h('td', { class: 'num' }, num(t.failures)), h('td', {}, t.errors.map(([c, n]) => `${c} ×${n}`).join(', ') || '–'))))),
      h('div', { class: 'card' }, h('h2', {}, 'Providers'), table(['name', 'kind', 'base URL', 'models', 'proxy'],
        r.providers.map((p) => h('tr', {}, h('td', {}, p.name), h('td', {}, p.kind), h('td', {}, h('code', {}, p.base_url)), h('td', {}, p.models.join(', ') || h('span', { class: 'muted' }, 'catalog')), h('td', {}, p.proxy ? 'yes' : '–'))))),
      h('div', { class: 'card' }, h('h2', {}, 'Recent errors'), r.recent_errors.length
        ? table(['when', 'model → target', 'status', 'error'], r.recent_errors.map((e) => h('tr', { class: 'click', onclick: () => { location.hash = '#/request/' + encodeURIComponent(e.id); } },
          h('td', {}, ago(e.ts_ms)), h('td', {}, `${e.model} → ${e.target}`), h('td', {}, e.status), h('td', {}, e.error_code))))
        : h('p', { class: 'muted' }, 'None.')));
  }
  return { refresh };
};

// ---- shell: sign-in, routing, polling, countdowns
async function show() {
  const main = document.getElementById('main');
  const [path, query] = (location.hash.slice(2) || 'overview').split('?');
  const [name, arg] = path.split('/');
  const view = views[name] ? name : 'overview';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('on', a.dataset.view === (view === 'request' ? 'requests' : view));
  main.replaceChildren();
  try {
    current = await views[view](main, new URLSearchParams(query || ''), arg && decodeURIComponent(arg));
    if (current.refresh) await current.refresh();
  } catch (e) { main.append(errorBox(e)); }
}

function signIn(sess) {
  const main = document.getElementById('main');
  const msg = h('p', { class: 'err', id: 'signin-error' });
  const key = h('input', { type: 'password', name: 'key', autocomplete: 'off', placeholder: sess.password_login ? 'admin key or password' : 'cg-… (an admin key)', id: 'signin-secret' });
  const form = h('form', { class: 'card signin', id: 'signin' }, h('h2', {}, 'Sign in to codex-gate'),
    h('p', { class: 'muted' }, sess.admin_key_exists || sess.password_login
      ? 'Use an admin key (codex-gate keys create --admin)' + (sess.password_login ? ' or the dashboard password.' : '.')
      : 'From this address the dashboard needs a sign-in. Create an admin key on the gateway’s machine (codex-gate keys create --admin --name me), or set [dashboard] password_hash.'),
    key, h('button', { class: 'primary', type: 'submit' }, 'Sign in'), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = key.value.trim();
    try {
      const body = v.startsWith('cg-') || !sess.password_login ? { key: v } : { password: v };
      const r = await api('/dashboard/api/login', { method: 'POST', body });
      csrf = r.csrf;
      document.getElementById('logout').hidden = false;
      show();
    } catch (e) { msg.textContent = e.message; }
  });
  main.replaceChildren(form);
  current = null;
}

async function boot() {
  let sess;
  try { sess = await (await fetch('/dashboard/api/session', { credentials: 'same-origin' })).json(); } catch (e) { return; }
  csrf = sess.csrf || null;
  document.getElementById('logout').hidden = sess.via !== 'session';
  if (!sess.signed_in) return signIn(sess);
  show();
}

document.getElementById('logout').addEventListener('click', async () => {
  try { await api('/dashboard/api/logout', { method: 'POST' }); } catch (_) { /* signed out anyway */ }
  csrf = null;
  boot();
});
window.addEventListener('hashchange', () => { if (csrf) show(); });

let refreshing = false;
setInterval(async () => {
  if (!current || !current.refresh || refreshing || document.visibilityState !== 'visible') return;
  const active = document.activeElement;
  if (active && active.closest('form') && active.value) return; // someone is typing
  refreshing = true;
  try { await current.refresh(); document.getElementById('live').textContent = 'live · ' + new Date().toLocaleTimeString(); } catch (_) { /* shown on the next load */ }
  refreshing = false;
}, POLL_MS);

// Countdowns tick every second; one that reaches zero brings the fresh windows in at once.
setInterval(() => {
  let expired = false;
  for (const el of document.querySelectorAll('.countdown')) {
    const left = Number(el.dataset.at) - Date.now() / 1000;
    if (left <= 0) { if (el.dataset.done !== '1') { el.dataset.done = '1'; expired = true; } el.textContent = 'reset'; } else el.textContent = el.dataset.prefix + span(left);
  }
  if (expired && current && current.refresh) current.refresh().catch(() => {});
}, 1000);

boot();
