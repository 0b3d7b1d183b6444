// Overview: masters and who leads, workers live/lost, cache capacity and
// use per tier, jobs running/queued and ended in the last hour, and the
// cluster's throughput.
import { h, api, num, bytes, rate, ago, when, usageBar, timeChart, errorBox } from '../lib.js';

export async function render(root) {
  const body = h('div');
  const chartEl = h('div', { class: 'chart', id: 'throughput-chart' });
  const chartNote = h('p', { class: 'muted' });
  root.replaceChildren(h('h1', {}, 'Overview'), body,
    h('div', { class: 'card' }, h('h2', {}, 'Throughput (bytes moved by jobs)'), chartEl, chartNote));
  let chart = null;
  let stopped = false;

  async function refresh() {
    let o;
    try {
      o = await api('overview');
    } catch (e) {
      body.replaceChildren(errorBox(e));
      return;
    }
    const jobLink = (label, n, q, id) => h('div', { class: 'card', id },
      h('div', { class: 'muted' }, label), h('div', { class: 'stat' }, h('a', { href: '/ui/jobs?' + q, 'data-nav': '' }, num(n))));
    const fs = o.fsMaster || {};
    const jm = o.jobMasters || { servers: [] };
    body.replaceChildren(
      ...(o.errors || []).map((e) => errorBox(e)),
      h('div', { class: 'grid' },
        jobLink('Jobs running', o.jobs.running, 'status=RUNNING', 'ov-running'),
        jobLink('Jobs queued (planning)', o.jobs.queued, 'status=CREATED', 'ov-queued'),
        jobLink('Failed in the last hour', o.jobs.failedLastHour, 'status=FAILED', 'ov-failed'),
        jobLink('Completed in the last hour', o.jobs.completedLastHour, 'status=COMPLETED', 'ov-completed'),
        h('div', { class: 'card', id: 'ov-workers' }, h('div', { class: 'muted' }, 'Block workers'),
          h('div', { class: 'stat' }, h('a', { href: '/ui/workers', 'data-nav': '' }, num(o.workers.live)), ' ', h('small', {}, 'live'),
            o.workers.lost ? h('span', {}, ' · ', h('span', { style: 'color:var(--red)' }, num(o.workers.lost)), ' ', h('small', {}, 'lost')) : null))),
      h('div', { class: 'row' },
        h('div', { class: 'card', id: 'ov-fsmaster' }, h('h2', {}, 'FS master'),
          h('dl', { class: 'kv' },
            h('dt', {}, 'Leader'), h('dd', { class: 'mono' }, (o.fsMasters && o.fsMasters.leaderAddress) || fs.address || '–'),
            (o.fsMasters && o.fsMasters.servers.length > 1) ? [h('dt', {}, 'Group'), h('dd', {}, groupTable(o.fsMasters))] : null,
            h('dt', {}, 'Version'), h('dd', {}, fs.version || '–'),
            h('dt', {}, 'Up since'), h('dd', {}, when(fs.startedMs) + ' (' + ago(fs.startedMs) + ')'),
            h('dt', {}, 'Journal'), h('dd', {}, 'sequence ' + num(fs.journalSequence) + ', checkpoint at ' + num(fs.checkpointSequence) + (fs.checkpointMs ? ' (' + ago(fs.checkpointMs) + ')' : '')),
            h('dt', {}, 'Inodes'), h('dd', {}, num(fs.inodes)),
            h('dt', {}, 'Root UFS'), h('dd', { class: 'mono' }, fs.ufsRoot || '–'))),
        h('div', { class: 'card', id: 'ov-jobmasters' }, h('h2', {}, 'Job masters (raft term ' + num(jm.term) + ')'), groupTable(jm)),
        h('div', { class: 'card', id: 'ov-tiers' }, h('h2', {}, 'Cache capacity (live workers)'),
          (o.tiers || []).length ? h('dl', { class: 'kv' }, (o.tiers || []).flatMap((t) => [h('dt', {}, t.tier), h('dd', {}, usageBar(t.used, t.capacity))]))
            : h('p', { class: 'muted' }, 'No live worker.'))));
  }

  // groupTable lists a group of masters with who leads.
  function groupTable(g) {
    return h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Id'), h('th', {}, 'Address'), h('th', {}, 'Role'))),
      h('tbody', {}, (g.servers || []).map((s) => h('tr', {},
        h('td', {}, s.id), h('td', { class: 'mono' }, s.address || s.raftAddress),
        h('td', {}, s.leader ? h('span', { class: 'badge s-COMPLETED' }, 'LEADER')
          : s.unreachable ? h('span', { class: 'badge s-FAILED', title: 'the leader\'s heartbeats to it fail' }, 'UNREACHABLE', s.unreachableSinceMs ? ' (' + ago(s.unreachableSinceMs) + ')' : '')
          : h('span', { class: 'badge s-CANCELED' }, /non/i.test(s.suffrage) ? 'NONVOTER' : 'FOLLOWER'))))));
  }

  async function refreshChart() {
    try {
      const t = await api('throughput');
      const pts = t.samples || [];
      chartNote.textContent = pts.length ? 'Sampled every ' + t.everyMs / 1000 + ' s; last ' + rate(pts[pts.length - 1][1]) + '.' : 'Sampling started: the first point comes in a few seconds (the console samples while someone looks).';
      if (!chart) chart = await timeChart(chartEl, 'bytes/s', (v) => bytes(v) + '/s', pts);
      else chart.set(pts);
    } catch (e) { chartNote.textContent = String(e.message || e); }
  }

  await refresh();
  refreshChart();
  const timer = setInterval(() => { if (!stopped) { refresh(); refreshChart(); } }, 5000);
  return () => { stopped = true; clearInterval(timer); if (chart) chart.destroy(); };
}
