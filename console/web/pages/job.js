// A job: its state live (server-sent events from the job master's watch),
// config, bytes over time, failed paths with their reasons, tasks with
// their attempts and workers, and a cancel button.
import { h, api, post, badge, bytes, num, when, ago, duration, jobTarget, progressBar, Progress, terminal, timeChart, errorBox } from '../lib.js';

export async function render(root, ctx) {
  const id = ctx.id;
  let detail;
  try {
    detail = await api('jobs/' + id);
  } catch (e) {
    root.replaceChildren(h('h1', {}, 'Job #' + id), errorBox(e), h('p', {}, h('a', { href: '/ui/jobs', 'data-nav': '' }, '← Jobs')));
    return null;
  }
  let job = detail.job;
  const prog = new Progress();
  prog.update(job);
  const statusEl = h('span', { id: 'job-status' }, badge(job.status));
  const bar = progressBar(job, prog);
  bar.id = 'job-progress';
  const msg = h('div');
  const cancel = h('button', { class: 'danger', id: 'job-cancel', type: 'button', hidden: terminal(job.status) }, 'Cancel job');
  let armed = null;
  cancel.addEventListener('click', async () => {
    // Two clicks: the first asks, the second cancels.
    if (!armed) {
      cancel.textContent = 'Really cancel? Its running tasks stop';
      armed = setTimeout(() => { armed = null; cancel.textContent = 'Cancel job'; }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    cancel.disabled = true;
    try {
      const j = await post('jobs/' + id + '/cancel');
      update(j);
      msg.replaceChildren(h('div', { class: 'ok' }, 'Job #' + id + ' canceled.'));
    } catch (e) {
      msg.replaceChildren(errorBox(e));
      cancel.disabled = false;
      cancel.textContent = 'Cancel job';
    }
  });
  const facts = h('dl', { class: 'kv' });
  const errorEl = h('div');
  const failedBox = h('div', { id: 'failed-paths' });
  const tasksBox = h('div', { id: 'job-tasks' });
  const chartEl = h('div', { class: 'chart', id: 'job-chart' });
  root.replaceChildren(
    h('p', {}, h('a', { href: '/ui/jobs', 'data-nav': '' }, '← Jobs')),
    h('h1', {}, 'Job #' + id, h('span', { class: 'muted' }, job.plan), statusEl, cancel),
    msg, errorEl,
    h('div', { class: 'card' }, bar),
    h('div', { class: 'row' },
      h('div', { class: 'card' }, h('h2', {}, 'Job'), facts),
      h('div', { class: 'card' }, h('h2', {}, 'Config'), h('pre', { id: 'job-config' }, JSON.stringify(job.config || {}, null, 2)))),
    h('div', { class: 'card' }, h('h2', {}, 'Bytes over time'), chartEl),
    h('div', { class: 'card' }, h('h2', {}, 'Failed paths'), failedBox),
    h('div', { class: 'card' }, h('h2', {}, 'Tasks'), tasksBox));

  // Bytes over time: the tasks' ends from the job master, then the live
  // states as they come.
  let series = detail.series.slice();
  let chart = null;
  timeChart(chartEl, 'bytes done', bytes, series).then((c) => { chart = c; }).catch(() => {});

  function drawFacts() {
    const rows = [
      ['Plan', job.plan], ['Target', jobTarget(job) || '–'], ['Submitter', job.submitter || '–'],
      ['Policy', job.policy ? h('a', { href: '/ui/policies', 'data-nav': '' }, job.policy) : '–'],
      ['Created', when(job.createdMs)], ['Updated', ago(job.updatedMs)],
      ['Finished', job.finishedMs ? when(job.finishedMs) + ' (took ' + duration(job.finishedMs - job.createdMs) + ')' : '–'],
      ['Tasks', num(job.tasksDone) + ' done, ' + num(job.tasksRunning) + ' running, ' + num(job.tasksFailed) + ' failed, of ' + num(job.tasksTotal) + (job.planningDone ? '' : ' (still planning)')],
      ['Bytes', bytes(job.bytesDone) + ' of ' + bytes(job.bytesTotal)],
      ['Round', job.round ? 'verify' : 'first'], ['Request id', h('span', { class: 'mono' }, job.requestId || '–')],
    ];
    facts.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    errorEl.replaceChildren(job.error ? h('div', { class: 'err', id: 'job-error' }, job.error) : '');
  }

  function drawTables(d) {
    const failed = d.job.failed || [];
    failedBox.replaceChildren(failed.length
      ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Path'), h('th', {}, 'Reason'))),
        h('tbody', {}, failed.map((f) => h('tr', {}, h('td', { class: 'mono' }, f.path), h('td', {}, f.error))))))
      : h('p', { class: 'muted' }, job.tasksFailed ? 'The failed tasks named no paths.' : 'None.'));
    const tasks = d.job.tasks || [];
    tasksBox.replaceChildren(tasks.length
      ? h('div', { class: 'table-wrap', style: 'max-height:480px' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Task'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Attempt'),
          h('th', {}, 'Worker'), h('th', {}, 'Work'), h('th', { class: 'num' }, 'Bytes'), h('th', {}, 'Error'), h('th', {}, 'Updated'))),
        h('tbody', {}, tasks.map((t) => h('tr', {},
          h('td', { class: 'num' }, t.id), h('td', {}, badge(t.status)), h('td', { class: 'num' }, t.attempt),
          h('td', { class: 'mono' }, t.workerAddress || '–'), h('td', { class: 'ellipsis mono', title: t.description || '' }, t.description || ''),
          h('td', { class: 'num' }, bytes(t.bytesDone) + ' / ' + bytes(t.bytesTotal)), h('td', {}, t.error || ''),
          h('td', { class: 'nowrap' }, ago(t.updatedMs)))))),
        (job.tasksTotal > tasks.length ? h('p', { class: 'muted' }, 'Showing ' + num(tasks.length) + ' of ' + num(job.tasksTotal) + ' tasks (unfinished first).') : null))
      : h('p', { class: 'muted' }, 'No tasks.'));
  }

  function update(j) {
    if (j.updatedMs < job.updatedMs) return;
    const wasDone = terminal(job.status);
    job = { ...job, ...j, failed: job.failed, tasks: job.tasks };
    prog.update(job);
    progressBar(job, prog, bar);
    statusEl.replaceChildren(badge(job.status));
    cancel.hidden = terminal(job.status);
    drawFacts();
    const last = series[series.length - 1];
    if (!last || job.bytesDone !== last[1] || terminal(job.status)) {
      series.push([Math.max(job.updatedMs, last ? last[0] : 0), job.bytesDone]);
      if (chart) chart.set(series);
    }
    if (terminal(job.status) && !wasDone) refresh();
    else refreshSoon();
  }

  // The tasks and failed paths come with the full job: fetch it at most
  // every 2 seconds while the job runs, and once when it ends.
  let refreshing = null;
  let lastRefresh = Date.now();
  async function refresh() {
    lastRefresh = Date.now();
    try {
      const d = await api('jobs/' + id);
      job = { ...job, failed: d.job.failed, tasks: d.job.tasks };
      drawTables(d);
      if (terminal(d.job.status)) { series = d.series.concat(series.filter((p) => p[0] > d.series[d.series.length - 1][0])); if (chart) chart.set(series); }
    } catch (e) { /* the events go on; the next refresh tries again */ }
  }
  function refreshSoon() {
    if (refreshing) return;
    refreshing = setTimeout(() => { refreshing = null; refresh(); }, Math.max(0, 2000 - (Date.now() - lastRefresh)));
  }

  drawFacts();
  drawTables(detail);
  let es = null;
  if (!terminal(job.status)) {
    es = new EventSource('/ui/api/jobs/' + id + '/events');
    es.addEventListener('job', (e) => update(JSON.parse(e.data)));
    es.addEventListener('end', () => { es.close(); });
  }
  return () => { if (es) es.close(); clearTimeout(refreshing); if (chart) chart.destroy(); };
}
