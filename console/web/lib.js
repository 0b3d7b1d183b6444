// Shared helpers of the console's pages: DOM building, the API client
// (session cookie + CSRF header), formatting, progress bars, charts.

// h builds an element: h('a', {href: '/x', class: 'y'}, 'text', child...).
// Attributes starting with "on" are listeners; null/false children are
// skipped; strings become text nodes (never HTML).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// svg builds an SVG element.
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

let session = null;

// setSession keeps the logged-in session (user, CSRF token).
export function setSession(s) { session = s; }
export function getSession() { return session; }

// ApiError carries the server's message (which names the path or id).
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api calls the console's JSON API. A POST carries the session's CSRF
// token; a 401 sends the browser to the login form.
export async function api(path, opts = {}) {
  const init = { method: opts.method || 'GET', headers: {}, credentials: 'same-origin' };
  if (init.method !== 'GET') {
    if (session && session.csrf) init.headers[session.csrfHeader] = session.csrf;
    if (opts.body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
  }
  const resp = await fetch('/ui/api/' + path, init);
  if (resp.status === 401) {
    location.assign('/ui/login?next=' + encodeURIComponent(location.pathname + location.search));
    throw new ApiError(401, 'not logged in');
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) throw new ApiError(resp.status, (body && body.error) || resp.statusText);
  return body;
}

// post is api with POST.
export function post(path, body) { return api(path, { method: 'POST', body }); }

// ---- formatting ----

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
export function bytes(n) {
  if (n === undefined || n === null || isNaN(n)) return '–';
  let i = 0; let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' + units[i];
}
export function num(n) { return n === undefined || n === null ? '–' : Number(n).toLocaleString('en-US'); }
export function rate(bps) { return bps > 0 ? bytes(bps) + '/s' : '–'; }
export function duration(ms) {
  if (ms === undefined || ms === null || !isFinite(ms) || ms < 0) return '–';
  const s = Math.round(ms / 1000);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}
export function ago(ms) {
  if (!ms) return '–';
  const d = Date.now() - ms;
  if (d < 0) return 'in ' + duration(-d);
  if (d < 1500) return 'just now';
  return duration(d) + ' ago';
}
export function when(ms) { return ms ? new Date(ms).toLocaleString() : '–'; }
export function badge(status) { return h('span', { class: 'badge s-' + status, dataset: { status } }, status || '–'); }
export function terminal(status) { return status === 'COMPLETED' || status === 'FAILED' || status === 'CANCELED'; }

// jobTarget is the one-line summary of a job's config (its path, or
// src → dst).
export function jobTarget(job) {
  const c = job.config || {};
  if (c.src || c.dst) return (c.src || '?') + ' → ' + (c.dst || '?');
  return c.path || '';
}

// ---- progress ----

// Progress tracks a job's rate from its successive states: bytes (or
// tasks, for a job that moves no bytes) per second over the last 10 seconds
// of states, or since the job started while fewer than 2 seconds of states
// are known; and so its ETA. Work lands in steps (a task's bytes when it
// ends), so the rate is taken over a window, never between two states.
export class Progress {
  constructor() { this.samples = []; this.bps = 0; this.tps = 0; }
  update(job) {
    const now = job.updatedMs || Date.now();
    const last = this.samples[this.samples.length - 1];
    if (last && now < last.t) return;
    this.samples.push({ t: now, b: job.bytesDone, k: job.tasksDone });
    while (this.samples.length > 2 && now - this.samples[1].t >= 10000) this.samples.shift();
    const first = this.samples[0];
    let dt = (now - first.t) / 1000; let db = job.bytesDone - first.b; let dk = job.tasksDone - first.k;
    if (dt < 2 && job.createdMs && now > job.createdMs) {
      dt = (now - job.createdMs) / 1000; db = job.bytesDone; dk = job.tasksDone;
    }
    if (dt > 0) { this.bps = Math.max(0, db) / dt; this.tps = Math.max(0, dk) / dt; }
  }
  eta(job) {
    if (terminal(job.status)) return 0;
    if (job.bytesTotal > 0 && this.bps > 0) return (job.bytesTotal - job.bytesDone) / this.bps * 1000;
    if (job.tasksTotal > 0 && this.tps > 0 && job.planningDone) return (job.tasksTotal - job.tasksDone) / this.tps * 1000;
    return NaN;
  }
}

// fraction is how far a job is, 0..1: by bytes when it counts bytes, else
// by tasks. A completed job is 1.
export function fraction(job) {
  if (job.status === 'COMPLETED') return 1;
  if (job.bytesTotal > 0) return Math.min(1, job.bytesDone / job.bytesTotal);
  if (job.tasksTotal > 0) return Math.min(1, (job.tasksDone + job.tasksFailed) / job.tasksTotal);
  return 0;
}

// progressBar renders (or updates, given the old element) a job's bar
// with its percentage, and a line with tasks, bytes, rate and ETA.
export function progressBar(job, prog, el) {
  const f = fraction(job);
  const pct = Math.floor(f * 100);
  const cls = 'bar' + (job.status === 'COMPLETED' ? ' done' : job.status === 'FAILED' ? ' failed' : job.status === 'CANCELED' ? ' canceled' : '');
  const eta = prog ? prog.eta(job) : NaN;
  const line = [
    num(job.tasksDone) + '/' + (job.planningDone ? num(job.tasksTotal) : num(job.tasksTotal) + '+') + ' tasks' + (job.tasksFailed ? ', ' + num(job.tasksFailed) + ' failed' : ''),
    bytes(job.bytesDone) + ' of ' + bytes(job.bytesTotal),
    terminal(job.status) ? null : rate(prog ? prog.bps : 0),
    terminal(job.status) ? null : 'ETA ' + (isNaN(eta) ? '–' : duration(eta)),
  ].filter(Boolean).join(' · ');
  const box = el || h('div', { class: 'progress' });
  box.dataset.pct = String(pct);
  box.replaceChildren(
    h('div', { class: cls, role: 'progressbar', 'aria-valuenow': pct, 'aria-valuemin': 0, 'aria-valuemax': 100 },
      h('span', { style: 'width:' + (f * 100).toFixed(1) + '%' }), h('em', {}, pct + '%')),
    h('div', { class: 'progress-line' }, line));
  return box;
}

// usageBar is a thin used/capacity bar.
export function usageBar(used, cap) {
  const f = cap > 0 ? Math.min(1, used / cap) : 0;
  return h('div', {}, h('div', { class: 'bar thin', title: bytes(used) + ' of ' + bytes(cap) }, h('span', { style: 'width:' + (f * 100).toFixed(1) + '%' })),
    h('div', { class: 'progress-line' }, bytes(used) + ' of ' + bytes(cap) + ' (' + Math.round(f * 100) + '%)'));
}

// ---- charts (uPlot, vendored) ----

let uplotMod = null;
async function uplot() {
  if (!uplotMod) uplotMod = (await import('./vendor/uplot/uPlot.esm.js')).default;
  return uplotMod;
}

// timeChart draws [x ms, y] points in el as a line chart; it returns an
// object whose set(points) redraws it.
export async function timeChart(el, label, yfmt, points) {
  const UPlot = await uplot();
  const data = (pts) => [pts.map((p) => p[0] / 1000), pts.map((p) => p[1])];
  const width = () => Math.max(300, el.clientWidth || 600);
  const plot = new UPlot({
    width: width(), height: 220,
    series: [{}, { label, stroke: '#1f6feb', width: 2, fill: 'rgba(31,111,235,0.08)', value: (u, v) => (v === null ? '–' : yfmt(v)) }],
    axes: [{}, { values: (u, vals) => vals.map(yfmt), size: 80 }],
    scales: { x: { time: true } },
    legend: { show: true },
  }, data(points), el);
  const onResize = () => plot.setSize({ width: width(), height: 220 });
  window.addEventListener('resize', onResize);
  return {
    set(pts) { plot.setData(data(pts)); },
    destroy() { window.removeEventListener('resize', onResize); plot.destroy(); },
  };
}

// debounce delays f until calls stop for ms.
export function debounce(f, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
}

// errorBox shows an error message.
export function errorBox(err) { return h('div', { class: 'err', role: 'alert' }, String(err && err.message || err)); }
