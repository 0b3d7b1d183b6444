// Workers: block workers (tiers, used/capacity, blocks, last heartbeat)
// and job workers with the tasks each is running.
import { h, api, num, ago, badge, usageBar, errorBox } from '../lib.js';

export async function render(root) {
  const body = h('div');
  root.replaceChildren(h('h1', {}, 'Workers'), body);
  async function refresh() {
    let w;
    try {
      w = await api('workers');
    } catch (e) {
      body.replaceChildren(errorBox(e));
      return;
    }
    body.replaceChildren(
      ...(w.errors || []).map((e) => errorBox(e)),
      h('div', { class: 'card' }, h('h2', {}, 'Block workers'),
        h('div', { class: 'table-wrap' }, h('table', { id: 'block-workers' },
          h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Id'), h('th', {}, 'Address'), h('th', {}, 'State'), h('th', {}, 'Tiers (used / capacity)'),
            h('th', { class: 'num' }, 'Blocks'), h('th', {}, 'Last heartbeat'), h('th', {}, 'Started'))),
          h('tbody', {}, (w.block || []).map((x) => h('tr', { dataset: { address: x.address } },
            h('td', { class: 'num' }, x.id), h('td', { class: 'mono' }, x.address), h('td', {}, badge(x.state)),
            h('td', {}, h('dl', { class: 'kv' }, (x.tiers || []).flatMap((t) => [h('dt', {}, t.tier), h('dd', {}, usageBar(t.used, t.capacity))]))),
            h('td', { class: 'num' }, num(x.blocks)), h('td', { class: 'nowrap' }, ago(x.lastHeartbeatMs)), h('td', { class: 'nowrap' }, ago(x.startedMs)))))))),
      h('div', { class: 'card' }, h('h2', {}, 'Job workers'),
        h('div', { class: 'table-wrap' }, h('table', { id: 'job-workers' },
          h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Id'), h('th', {}, 'Address'), h('th', {}, 'Beside block worker'), h('th', {}, 'State'),
            h('th', { class: 'num' }, 'Running / capacity'), h('th', {}, 'Last heartbeat'), h('th', {}, 'Tasks it is running'))),
          h('tbody', {}, (w.job || []).map((x) => h('tr', {},
            h('td', { class: 'num' }, x.id), h('td', { class: 'mono' }, x.address), h('td', { class: 'mono' }, x.blockWorker || '–'), h('td', {}, badge(x.state)),
            h('td', { class: 'num' }, num(x.running) + ' / ' + num(x.capacity) + ' (' + num(x.threads) + ' threads)'),
            h('td', { class: 'nowrap' }, ago(x.lastHeartbeatMs)),
            h('td', {}, x.tasks.length ? h('ul', { class: 'tasks-list' }, x.tasks.map((t) => h('li', {},
              h('a', { href: '/ui/jobs/' + t.jobId, 'data-nav': '' }, '#' + t.jobId), ' task ' + t.id + ' ', h('span', { class: 'mono' }, t.description || ''))))
              : h('span', { class: 'muted' }, 'idle')))))))));
  }
  await refresh();
  const timer = setInterval(refresh, 3000);
  return () => clearInterval(timer);
}
