// Policies and pipelines: cron policies (schedule, next and last runs with
// their outcomes, pause / resume / run now, recent runs) and pipeline runs,
// each drawn as its DAG with every step's state.
import { h, svg, api, post, badge, ago, when, num, bytes, jobTarget, errorBox } from '../lib.js';

export async function render(root) {
  const msg = h('div');
  const polBox = h('div', { id: 'policies' });
  const pipeBox = h('div', { id: 'pipelines' });
  root.replaceChildren(h('h1', {}, 'Policies & pipelines'), msg,
    h('div', { class: 'card' }, h('h2', {}, 'Cron policies'), polBox),
    h('div', { class: 'card' }, h('h2', {}, 'Pipeline runs'), pipeBox));
  const open = new Set(); // policies whose recent runs are shown

  async function refreshPolicies() {
    let d;
    try { d = await api('policies'); } catch (e) { polBox.replaceChildren(errorBox(e)); return; }
    if (!d.policies.length) {
      polBox.replaceChildren(h('p', { class: 'muted' }, 'No policies. Add one with ', h('code', {}, 'alluvium policy add NAME --cron SPEC load PATH'), ' or the SDK.'));
      return;
    }
    const tbody = h('tbody');
    for (const p of d.policies) {
      const act = async (action) => {
        try {
          const r = await post('policies/' + encodeURIComponent(p.name) + '/' + action);
          msg.replaceChildren(h('div', { class: 'ok' }, action === 'run' ? ['Policy ' + p.name + ' launched ', h('a', { href: '/ui/jobs/' + r.jobId, 'data-nav': '' }, 'job #' + r.jobId), '.'] : 'Policy ' + p.name + ' ' + (action === 'pause' ? 'paused' : 'resumed') + '.'));
          refreshPolicies();
        } catch (e) { msg.replaceChildren(errorBox(e)); }
      };
      const runs = h('tr', { hidden: !open.has(p.name) }, h('td', { colspan: 9 }, h('div', { class: 'muted' }, 'Loading…')));
      const toggle = h('button', { type: 'button', onclick: () => {
        if (open.has(p.name)) { open.delete(p.name); runs.hidden = true; return; }
        open.add(p.name); runs.hidden = false; loadRuns(p.name, runs.firstChild);
      } }, 'Runs');
      if (open.has(p.name)) loadRuns(p.name, runs.firstChild);
      tbody.append(h('tr', { dataset: { policy: p.name } },
        h('td', {}, h('strong', {}, p.name)),
        h('td', { class: 'mono' }, p.cron),
        h('td', {}, p.plan + ' ', h('span', { class: 'mono muted' }, jobTarget({ config: p.config }))),
        h('td', {}, p.enabled ? badge('ENABLED') : badge('PAUSED')),
        h('td', { class: 'nowrap', title: when(p.nextRunMs) }, p.enabled ? ago(p.nextRunMs) : '–'),
        h('td', { class: 'nowrap' }, p.lastJobId ? [h('a', { href: '/ui/jobs/' + p.lastJobId, 'data-nav': '' }, '#' + p.lastJobId), ' ', badge(p.lastJobStatus), h('div', { class: 'progress-line' }, ago(p.lastLaunchMs || p.lastRunMs))] : h('span', { class: 'muted' }, 'never')),
        h('td', { class: 'num' }, num(p.runs) + (p.skipped ? ' (' + num(p.skipped) + ' skipped)' : '')),
        h('td', {}, p.overlap || 'skip'),
        h('td', { class: 'nowrap' },
          p.enabled ? h('button', { type: 'button', class: 'policy-pause', onclick: () => act('pause') }, 'Pause') : h('button', { type: 'button', class: 'policy-resume', onclick: () => act('resume') }, 'Resume'),
          ' ', h('button', { type: 'button', class: 'primary policy-run', onclick: () => act('run') }, 'Run now'), ' ', toggle)));
      tbody.append(runs);
    }
    polBox.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Schedule'), h('th', {}, 'Job'), h('th', {}, 'State'), h('th', {}, 'Next run'),
        h('th', {}, 'Last run'), h('th', { class: 'num' }, 'Runs'), h('th', {}, 'Overlap'), h('th', {}, ''))), tbody)));
  }

  async function loadRuns(name, cell) {
    try {
      const d = await api('jobs?size=10&policy=' + encodeURIComponent(name));
      cell.replaceChildren(d.jobs.length ? h('ul', { class: 'tasks-list' }, d.jobs.map((j) => h('li', {},
        h('a', { href: '/ui/jobs/' + j.id, 'data-nav': '' }, '#' + j.id), ' ', badge(j.status), ' ', when(j.createdMs),
        j.error ? h('span', { class: 'muted' }, ' — ' + j.error) : null)))
        : h('span', { class: 'muted' }, 'No runs kept.'));
    } catch (e) { cell.replaceChildren(errorBox(e)); }
  }

  async function refreshPipelines() {
    let d;
    try { d = await api('pipelines'); } catch (e) { pipeBox.replaceChildren(errorBox(e)); return; }
    const note = h('p', { class: 'muted' }, 'Runs the cluster keeps (alluvium pipeline submit, policies that fire pipelines) are drawn with their edges. ' +
      'Runs of SDK pipelines (sdk.Pipeline) are found among the newest ' + num(d.scanned) + ' jobs you may see: the SDK runs them in the client, ' +
      'so the cluster knows each step\'s jobs and state but not the edges between steps, and lays them out by when each step started.');
    if (!d.runs.length) { pipeBox.replaceChildren(note, h('p', { class: 'muted' }, 'No pipeline runs.')); return; }
    pipeBox.replaceChildren(note, ...d.runs.map((r) => h('div', { class: 'card pipeline-run', dataset: { run: r.id, source: r.source } },
      h('h2', {}, (r.name || 'pipeline') + ' ', h('span', { class: 'muted mono' }, (r.source === 'cluster' ? 'run ' : '') + r.id.split('.').pop()), ' ', badge(r.status), ' ',
        h('span', { class: 'muted' }, when(r.startedMs) + (r.endedMs ? ', took ' + Math.round((r.endedMs - r.startedMs) / 1000) + ' s' : ''))),
      h('div', { class: 'dag' }, dag(r.steps)))));
  }

  await Promise.all([refreshPolicies(), refreshPipelines()]);
  const timer = setInterval(() => { refreshPolicies(); refreshPipelines(); }, 5000);
  return () => clearInterval(timer);
}

const FILL = { COMPLETED: '#dafbe1', SUCCEEDED: '#dafbe1', RUNNING: '#ddf4ff', CREATED: '#fff8c5', PENDING: '#f6f8fa', FAILED: '#ffebe9', CANCELED: '#eaeef2', SKIPPED: '#eaeef2' };

// dag draws steps as a DAG: columns by dependency depth when the steps
// name what they come after, else by when each started (a step starts a
// new column once every step of the previous one had ended).
export function dag(steps) {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const known = steps.some((s) => (s.after || []).length);
  const col = new Map();
  if (known) {
    const depth = (s, seen = new Set()) => {
      if (col.has(s.name)) return col.get(s.name);
      if (seen.has(s.name)) return 0;
      seen.add(s.name);
      const d = Math.max(-1, ...(s.after || []).map((a) => (byName.has(a) ? depth(byName.get(a), seen) : -1))) + 1;
      col.set(s.name, d);
      return d;
    };
    steps.forEach((s) => depth(s));
  } else {
    const sorted = steps.slice().sort((a, b) => a.startedMs - b.startedMs);
    let c = 0; let colEnd = 0; let first = true;
    for (const s of sorted) {
      if (!first && colEnd && s.startedMs >= colEnd) c++;
      if (first || s.startedMs >= colEnd) colEnd = s.endedMs || Infinity; else colEnd = Math.max(colEnd, s.endedMs || Infinity);
      first = false;
      col.set(s.name, c);
    }
  }
  const cols = [];
  for (const s of steps) { const c = col.get(s.name); (cols[c] = cols[c] || []).push(s); }
  const W = 190; const H = 52; const GX = 60; const GY = 16;
  const pos = new Map();
  cols.forEach((list, c) => list.forEach((s, r) => pos.set(s.name, { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
  const width = 20 + cols.length * (W + GX) - GX;
  const height = 20 + Math.max(1, ...cols.map((l) => (l ? l.length : 0))) * (H + GY) - GY;
  const edges = [];
  if (known) {
    for (const s of steps) {
      for (const a of s.after || []) {
        const from = pos.get(a); const to = pos.get(s.name);
        if (!from || !to) continue;
        const x1 = from.x + W; const y1 = from.y + H / 2; const x2 = to.x; const y2 = to.y + H / 2;
        edges.push(svg('path', { class: 'edge', d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2 - 6},${y2}`, 'marker-end': 'url(#arrow)' }));
      }
    }
  }
  const nodes = steps.map((s) => {
    const p = pos.get(s.name);
    const label = s.name.length > 24 ? s.name.slice(0, 23) + '…' : s.name;
    const sub = (s.plan || '') + ' · ' + s.status + (s.attempts > 1 ? ' · try ' + s.attempts : '') + (s.bytesDone ? ' · ' + bytes(s.bytesDone) : '');
    const link = svg('a', { href: s.jobs && s.jobs.length ? '/ui/jobs/' + s.jobs[s.jobs.length - 1] : null, 'data-nav': '' },
      svg('g', { class: 'node', 'data-step': s.name, 'data-status': s.status },
        svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6, fill: FILL[s.status] || '#fff' }),
        svg('text', { x: p.x + 10, y: p.y + 20, 'font-weight': 600 }, label),
        svg('text', { x: p.x + 10, y: p.y + 38, fill: '#5b6875' }, sub)));
    return link;
  });
  return svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'pipeline DAG' },
    svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 6, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8c959f' }))),
    ...edges, ...nodes);
}
