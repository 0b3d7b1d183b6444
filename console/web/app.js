// The console's shell: session, navigation between pages without reloads
// (history API), and the pages' lifecycle (each render returns a cleanup
// that closes its event streams and timers).
import { api, h, setSession, errorBox } from './lib.js';

const pages = {
  overview: () => import('./pages/overview.js'),
  jobs: () => import('./pages/jobs.js'),
  job: () => import('./pages/job.js'),
  policies: () => import('./pages/policies.js'),
  workers: () => import('./pages/workers.js'),
  browse: () => import('./pages/browse.js'),
};

// route maps a path to a page and its parameters.
function route(path) {
  const p = path.replace(/^\/ui\/?/, '').replace(/\/$/, '');
  if (p === '') return { page: 'overview' };
  let m;
  if ((m = p.match(/^jobs\/(\d+)$/))) return { page: 'job', id: Number(m[1]) };
  if (p === 'jobs') return { page: 'jobs' };
  if (p === 'policies' || p === 'pipelines') return { page: 'policies' };
  if (p === 'workers') return { page: 'workers' };
  if (p === 'browse') return { page: 'browse' };
  return { page: null };
}

let cleanup = null;
let seq = 0;

async function render() {
  const my = ++seq;
  if (cleanup) { try { cleanup(); } catch (e) { /* a page's cleanup must not stop the next */ } cleanup = null; }
  const r = route(location.pathname);
  const nav = r.page === 'job' ? 'jobs' : r.page;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === nav);
  const root = document.getElementById('app');
  if (!r.page) {
    root.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, 'No console page at ' + location.pathname + '. ', h('a', { href: '/ui/', 'data-nav': '' }, 'Overview')));
    return;
  }
  try {
    const mod = await pages[r.page]();
    if (my !== seq) return;
    const params = new URLSearchParams(location.search);
    const c = await mod.render(root, { ...r, params, navigate });
    if (my !== seq) { if (c) c(); return; }
    cleanup = c || null;
  } catch (e) {
    if (my === seq) root.replaceChildren(errorBox(e));
  }
}

// navigate moves to a console URL without reloading.
export function navigate(url, replace) {
  if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
  render();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-nav]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', render);

async function start() {
  let s;
  try {
    s = await api('session');
  } catch (e) {
    document.getElementById('app').replaceChildren(errorBox(e));
    return;
  }
  setSession(s);
  document.getElementById('who').textContent = s.user + (s.system ? ' (superuser)' : '');
  const out = document.getElementById('logout');
  out.hidden = !s.loginRequired;
  out.addEventListener('click', async () => {
    await fetch('/ui/logout', { method: 'POST', headers: { [s.csrfHeader]: s.csrf }, credentials: 'same-origin' });
    location.assign('/ui/login');
  });
  document.getElementById('foot').textContent = 'Alluvium ' + (s.version || '') + ' · served by ' + (s.server || 'a master');
  render();
}

start();
