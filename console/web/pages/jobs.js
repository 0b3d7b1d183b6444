// Jobs: the list (newest first, filtered and paged by the job master), with
// live progress bars fed by server-sent events from the job master's watch,
// and the form that submits a job.
import { h, api, post, badge, num, ago, jobTarget, progressBar, Progress, terminal, debounce, errorBox } from '../lib.js';

const STATUSES = ['CREATED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELED'];
const PLANS = ['load', 'persist', 'replicate', 'move', 'copy'];
const PAGE = 50;

// The fields of each plan's form; the config is built from them.
const FORMS = {
  load: [['path', 'Path', 'text', '/'], ['replication', 'Replication', 'number', ''], ['verify', 'Verify afterwards', 'checkbox']],
  persist: [['path', 'Path', 'text', '/']],
  replicate: [['path', 'Path', 'text', '/'], ['replication', 'Replication', 'number', '2']],
  move: [['src', 'Source', 'text', ''], ['dst', 'Destination', 'text', '']],
  copy: [['src', 'Source', 'text', ''], ['dst', 'Destination', 'text', ''], ['overwrite', 'Overwrite', 'checkbox']],
};

export async function render(root, ctx) {
  const params = ctx.params;
  const filter = { status: params.get('status') || '', plan: params.get('plan') || '', submitter: params.get('submitter') || '' };
  let page = params.get('page') || '';
  let tokens = []; // tokens of the pages before this one (for "Newer")
  let es = null;
  let loadSeq = 0;
  let total = 0;
  const rows = new Map(); // job id → {tr, job, prog, bar, status}

  const statusSel = h('select', { id: 'filter-status', 'aria-label': 'Status' },
    h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s, selected: filter.status === s }, s)));
  const planSel = h('select', { id: 'filter-plan', 'aria-label': 'Plan' },
    h('option', { value: '' }, 'any'), PLANS.map((p) => h('option', { value: p, selected: filter.plan === p }, p)));
  const subIn = h('input', { id: 'filter-submitter', placeholder: 'user', value: filter.submitter, size: 12, 'aria-label': 'Submitter' });
  const summary = h('span', { class: 'muted', id: 'jobs-summary' });
  const tbody = h('tbody');
  const table = h('table', { id: 'jobs-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'ID'), h('th', {}, 'Plan'), h('th', {}, 'Status'), h('th', {}, 'Target'),
      h('th', { style: 'min-width:260px' }, 'Progress'), h('th', {}, 'Submitter'), h('th', {}, 'Created'))),
    tbody);
  const newer = h('button', { id: 'page-newer', type: 'button', onclick: () => { page = tokens.pop() || ''; load(); } }, '← Newer');
  const older = h('button', { id: 'page-older', type: 'button' }, 'Older →');
  const msg = h('div');
  const submitPanel = submitForm(msg, (id) => {
    // Show the new job at once; its events keep it moving.
    if (!page && !rows.has(id)) api('jobs/' + id).then((d) => { upsert(d.job, true); restartEvents(); }).catch(() => {});
  });
  const toggle = h('button', { id: 'submit-toggle', class: 'primary', type: 'button', onclick: () => { submitPanel.hidden = !submitPanel.hidden; } }, 'Submit a job');

  root.replaceChildren(
    h('h1', {}, 'Jobs', toggle),
    submitPanel, msg,
    h('div', { class: 'filters' },
      h('label', {}, 'Status', statusSel), h('label', {}, 'Plan', planSel), h('label', {}, 'Submitter', subIn), summary),
    h('div', { class: 'table-wrap' }, table),
    h('div', { class: 'pager' }, newer, h('span', { class: 'muted', id: 'page-info' }), older));

  const query = () => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v) q.set(k, v);
    return q;
  };
  const onFilter = () => {
    filter.status = statusSel.value; filter.plan = planSel.value; filter.submitter = subIn.value.trim();
    page = ''; tokens = [];
    load();
  };
  statusSel.addEventListener('change', onFilter);
  planSel.addEventListener('change', onFilter);
  subIn.addEventListener('input', debounce(onFilter, 300));

  function upsert(job, top) {
    let r = rows.get(job.id);
    if (!r) {
      const prog = new Progress();
      prog.update(job);
      const bar = progressBar(job, prog);
      const statusCell = h('td', {}, badge(job.status));
      const tr = h('tr', { dataset: { id: job.id } },
        h('td', { class: 'num' }, h('a', { href: '/ui/jobs/' + job.id, 'data-nav': '' }, '#' + job.id)),
        h('td', {}, job.plan + (job.policy ? ' ' : ''), job.policy ? h('span', { class: 'muted' }, '(' + job.policy + ')') : null),
        statusCell,
        h('td', { class: 'ellipsis mono', title: jobTarget(job) }, jobTarget(job)),
        h('td', {}, bar),
        h('td', {}, job.submitter || '–'),
        h('td', { class: 'nowrap', title: new Date(job.createdMs).toLocaleString() }, ago(job.createdMs)));
      r = { tr, job, prog, bar, statusCell };
      const empty = tbody.querySelector('tr.empty');
      if (empty) empty.remove();
      if (top) {
        // A job that appeared while the page is open.
        total++;
        summary.textContent = num(total) + (total === 1 ? ' job' : ' jobs');
      }
      rows.set(job.id, r);
      if (top && tbody.firstChild) tbody.insertBefore(tr, tbody.firstChild); else tbody.append(tr);
      if (top && rows.size > PAGE) {
        const last = tbody.lastChild;
        rows.delete(Number(last.dataset.id));
        last.remove();
      }
      return r;
    }
    if (job.updatedMs < r.job.updatedMs) return r; // an older state, late
    r.prog.update(job);
    r.job = job;
    progressBar(job, r.prog, r.bar);
    if (r.statusCell.firstChild.dataset.status !== job.status) r.statusCell.replaceChildren(badge(job.status));
    return r;
  }

  function restartEvents() {
    if (es) es.close();
    const q = query();
    const watch = [...rows.values()].filter((r) => !terminal(r.job.status)).map((r) => r.job.id);
    if (watch.length) q.set('watch', watch.slice(0, 200).join(','));
    if (!page) q.set('follow', String(Math.max(0, ...rows.keys())));
    if (!watch.length && page) { es = null; return; }
    es = new EventSource('/ui/api/jobs/events?' + q.toString());
    es.addEventListener('job', (e) => {
      const job = JSON.parse(e.data);
      upsert(job, !rows.has(job.id));
    });
  }

  async function load() {
    const my = ++loadSeq;
    const q = query();
    const url = '/ui/jobs' + (q.toString() ? '?' + q : '') + (page ? (q.toString() ? '&' : '?') + 'page=' + page : '');
    history.replaceState(null, '', url);
    if (page) q.set('page', page);
    q.set('size', String(PAGE));
    let data;
    try {
      data = await api('jobs?' + q.toString());
    } catch (e) {
      if (my === loadSeq) msg.replaceChildren(errorBox(e));
      return;
    }
    if (my !== loadSeq) return;
    msg.replaceChildren();
    rows.clear();
    tbody.replaceChildren();
    for (const j of data.jobs) upsert(j, false);
    if (!data.jobs.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: 7, class: 'muted' }, 'No jobs match.')));
    const first = tokens.length * PAGE;
    total = data.total;
    summary.textContent = num(data.total) + (data.total === 1 ? ' job' : ' jobs');
    document.getElementById('page-info').textContent = data.jobs.length ? `${num(first + 1)}–${num(first + data.jobs.length)} of ${num(data.total)}` : '';
    newer.disabled = !page;
    older.disabled = !data.next;
    older.onclick = () => { tokens.push(page); page = data.next; load(); };
    // For the browser test and for anyone timing the page: when this query
    // was drawn, in ms since the navigation started.
    table.dataset.query = q.toString();
    table.dataset.renderedAt = String(performance.now());
    restartEvents();
  }

  await load();
  return () => { if (es) es.close(); loadSeq++; };
}

// submitForm is the panel that submits a job: a plan, its fields, extra
// config as JSON. onSubmitted gets the new job's id.
function submitForm(msg, onSubmitted) {
  const planSel = h('select', { id: 'submit-plan', name: 'plan' }, PLANS.map((p) => h('option', { value: p }, p)));
  const fields = h('div', { class: 'submit-form' });
  const extra = h('textarea', { id: 'submit-extra', placeholder: '{"bandwidth": 104857600}', rows: 2 });
  let requestId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
  const inputs = {};
  const draw = () => {
    const form = FORMS[planSel.value];
    for (const k of Object.keys(inputs)) delete inputs[k];
    fields.replaceChildren(...form.map(([key, label, type, def]) => {
      const input = type === 'checkbox'
        ? h('input', { type: 'checkbox', id: 'submit-' + key, name: key })
        : h('input', { type, id: 'submit-' + key, name: key, value: def || '', placeholder: def || '', min: type === 'number' ? 1 : null });
      inputs[key] = { input, type };
      return h('label', {}, label, input);
    }));
  };
  planSel.addEventListener('change', draw);
  draw();
  const button = h('button', { class: 'primary', type: 'submit', id: 'submit-go' }, 'Submit');
  const form = h('form', { id: 'submit-form', class: 'card', hidden: true },
    h('h2', {}, 'Submit a job'),
    h('div', { class: 'submit-form' }, h('label', {}, 'Plan', planSel)),
    fields,
    h('div', { class: 'submit-form' }, h('label', { class: 'wide' }, 'More config (JSON object, merged; see the plan\'s options in the README)', extra)),
    h('p', {}, button));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const config = {};
    for (const [key, { input, type }] of Object.entries(inputs)) {
      if (type === 'checkbox') { if (input.checked) config[key] = true; } else if (input.value.trim() !== '') config[key] = type === 'number' ? Number(input.value) : input.value.trim();
    }
    if (extra.value.trim()) {
      try { Object.assign(config, JSON.parse(extra.value)); } catch (err) { msg.replaceChildren(errorBox('More config: ' + err.message)); return; }
    }
    button.disabled = true;
    try {
      const r = await post('jobs', { plan: planSel.value, config, requestId });
      requestId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
      msg.replaceChildren(h('div', { class: 'ok', id: 'submit-ok' }, 'Submitted ', h('a', { href: '/ui/jobs/' + r.id, 'data-nav': '' }, 'job #' + r.id), '.'));
      onSubmitted(r.id);
    } catch (err) {
      msg.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

