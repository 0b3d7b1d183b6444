// Browse: the namespace with size, persistence, cached %, and a file's
// blocks with the workers (and tiers) that hold them; download a file.
import { h, api, bytes, ago, badge, num, errorBox } from '../lib.js';

const PAGE = 200;

export async function render(root, ctx) {
  const path = ctx.params.get('path') || '/';
  const parts = path.split('/').filter(Boolean);
  const crumbs = [h('a', { href: '/ui/browse?path=/', 'data-nav': '' }, '/')];
  parts.forEach((p, i) => {
    const to = '/' + parts.slice(0, i + 1).join('/');
    crumbs.push(i === parts.length - 1 ? h('span', {}, p) : h('a', { href: '/ui/browse?path=' + encodeURIComponent(to), 'data-nav': '' }, p), i < parts.length - 1 ? h('span', { class: 'muted' }, ' / ') : null);
  });
  let d;
  try {
    d = await api('files?path=' + encodeURIComponent(path) + '&size=' + PAGE);
  } catch (e) {
    root.replaceChildren(h('h1', {}, 'Browse'), h('div', { class: 'crumbs' }, crumbs), errorBox(e));
    return null;
  }
  const info = d.info;
  root.replaceChildren(h('h1', {}, 'Browse'), h('div', { class: 'crumbs mono', id: 'crumbs' }, crumbs));
  if (info.isDir) {
    const tbody = h('tbody');
    const more = h('button', { id: 'files-more', type: 'button', hidden: !d.next }, 'More');
    const add = (children) => {
      for (const c of children) {
        const href = '/ui/browse?path=' + encodeURIComponent(c.path);
        tbody.append(h('tr', { dataset: { path: c.path } },
          h('td', { class: 'mono' }, h('a', { href, 'data-nav': '' }, c.name + (c.isDir ? '/' : ''))),
          h('td', { class: 'num' }, c.isDir ? '' : bytes(c.length)),
          h('td', {}, badge(state(c))),
          h('td', {}, c.isDir ? '' : cachedBar(c)),
          h('td', { class: 'mono' }, mode(c)), h('td', {}, c.owner + ':' + c.group),
          h('td', { class: 'nowrap' }, ago(c.lastModificationTimeMs))));
      }
    };
    add(d.children);
    let next = d.next;
    more.addEventListener('click', async () => {
      try {
        const p = await api('files?path=' + encodeURIComponent(path) + '&size=' + PAGE + '&after=' + encodeURIComponent(next));
        add(p.children);
        next = p.next;
        more.hidden = !next;
      } catch (e) { root.append(errorBox(e)); }
    });
    root.append(
      h('div', { class: 'table-wrap' }, h('table', { id: 'files' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Persistence'), h('th', {}, 'Cached'),
          h('th', {}, 'Mode'), h('th', {}, 'Owner'), h('th', {}, 'Modified'))),
        tbody)),
      d.children.length ? null : h('p', { class: 'muted' }, 'Empty directory.'),
      h('div', { class: 'pager' }, more));
    return null;
  }
  root.append(
    h('div', { class: 'row' },
      h('div', { class: 'card' }, h('h2', {}, info.name),
        h('dl', { class: 'kv', id: 'file-info' },
          h('dt', {}, 'Size'), h('dd', {}, bytes(info.length) + ' (' + num(info.length) + ' bytes)'),
          h('dt', {}, 'Block size'), h('dd', {}, bytes(info.blockSizeBytes)),
          h('dt', {}, 'Persistence'), h('dd', {}, badge(state(info))),
          h('dt', {}, 'Cached'), h('dd', {}, cachedBar(info)),
          h('dt', {}, 'UFS'), h('dd', { class: 'mono' }, info.ufsPath || '–'),
          h('dt', {}, 'Owner'), h('dd', {}, info.owner + ':' + info.group + ' ' + mode(info)),
          h('dt', {}, 'Modified'), h('dd', {}, new Date(info.lastModificationTimeMs).toLocaleString()),
          h('dt', {}, 'Pinned'), h('dd', {}, info.pinned ? 'yes' : 'no')),
        h('p', {}, h('a', { class: 'button', id: 'download', href: '/ui/api/download?path=' + encodeURIComponent(info.path), download: info.name }, 'Download')))),
    h('div', { class: 'card' }, h('h2', {}, 'Blocks and where they live'),
      (info.blocks || []).length ? h('div', { class: 'table-wrap' }, h('table', { id: 'blocks' },
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Index'), h('th', {}, 'Block id'), h('th', { class: 'num' }, 'Offset'), h('th', { class: 'num' }, 'Length'), h('th', {}, 'Cached on (worker, tier)'))),
        h('tbody', {}, info.blocks.map((b) => h('tr', {},
          h('td', { class: 'num' }, info.blockSizeBytes ? Math.round(b.offset / info.blockSizeBytes) : 0), h('td', { class: 'mono' }, b.id), h('td', { class: 'num' }, bytes(b.offset)), h('td', { class: 'num' }, bytes(b.length)),
          h('td', { class: 'block-locations' }, b.locations.length ? b.locations.map((l) => h('span', { class: 'loc mono', dataset: { worker: l.host + ':' + l.rpcPort } }, l.host + ':' + l.rpcPort + ' ' + l.tier))
            : h('span', { class: 'muted' }, 'not cached (read from the UFS)')))))))
        : h('p', { class: 'muted' }, 'No blocks.')));
  return null;
}

// state is a file's persistence state without the enum's prefix.
function state(f) { return (f.persistenceState || '').replace(/^PERSISTENCE_STATE_/, ''); }

// mode renders the file's mode bits (octal in the JSON) as ls does.
function mode(f) {
  const m = parseInt(f.mode, 8) || 0;
  let s = f.isDir ? 'd' : '-';
  for (let i = 8; i >= 0; i--) s += (m & (1 << i)) ? 'rwx'[(8 - i) % 3] : '-';
  return s;
}

function cachedBar(f) {
  const pct = f.cachedPercent || 0;
  return h('div', { title: pct + '% cached, ' + (f.inMemoryPercent || 0) + '% in memory' },
    h('div', { class: 'bar thin' + (pct === 100 ? ' done' : '') }, h('span', { style: 'width:' + pct + '%' })),
    h('div', { class: 'progress-line' }, pct + '%' + (f.inMemoryPercent ? ' (' + f.inMemoryPercent + '% in memory)' : '')));
}
