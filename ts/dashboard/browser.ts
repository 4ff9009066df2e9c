/**
 * The dashboard's memory browser: pick a namespace, page through its memories (list with a
 * cursor), search them (vector / text / hybrid, with a metadata filter), open one (text,
 * metadata, significance, associations that open the associated memory), edit its metadata,
 * delete it; live updates through `subscribe`. Talks to the memory server directly with the
 * package's own MemoryClient (the same client users get), at the port from the status.
 */
import { MemoryClient, type MemoryEvent, type RetrieveOptions, type WireMemory } from '../client/index.js';
import { $, el, tid } from './dom.js';

const PAGE = 25;
type Mode = 'vector' | 'text' | 'hybrid';

interface BrowserState {
  client: MemoryClient | null;
  url: string | null;
  namespace: string;
  /** Rows shown, in order; a search result replaces them. */
  rows: WireMemory[];
  cursor: string | null;
  /** Non-null while a search result is shown (live additions are then not inserted). */
  search: { query: string; mode: Mode } | null;
  open: WireMemory | null;
  subscribed: string | null;
}

const state: BrowserState = { client: null, url: null, namespace: 'default', rows: [], cursor: null, search: null, open: null, subscribed: null };

let token: string | null = null;

/** Shows a problem in the browser's own error line (and clears it with ''). */
function problem(message: string): void {
  $(tid('browser-error')).textContent = message;
}

async function run(what: string, f: () => Promise<void>): Promise<void> {
  problem('');
  try {
    await f();
  } catch (err) {
    problem(`${what}: ${(err as Error).message}`);
  }
}

function client(): MemoryClient {
  if (!state.client) throw new Error('the memory server is not running (no port in the status)');
  return state.client;
}

/** Called with each status: (re)connects when the memory server's URL appears or changes. */
export function onMemoryUrl(url: string | null): void {
  if (url === state.url) return;
  state.url = url;
  const old = state.client;
  state.client = null;
  state.subscribed = null;
  if (old) void old.close();
  if (url === null) return;
  const c = new MemoryClient({ url, ...(token ? { token } : {}), reconnect: { maxAttempts: Infinity } });
  state.client = c;
  c.on('memory_added', onEvent);
  c.on('memory_updated', onEvent);
  c.on('memory_removed', onEvent);
  void run('connect', async () => {
    await refreshNamespaces();
    await showList();
  });
}

async function refreshNamespaces(): Promise<void> {
  const { namespaces } = await client().namespaces();
  const sel = $<HTMLSelectElement>(tid('browser-namespace'));
  const names = new Set(namespaces.map((n) => n.name));
  names.add(state.namespace);
  sel.replaceChildren(
    ...[...names].sort().map((name) => {
      const n = namespaces.find((x) => x.name === name)?.total_memories ?? 0;
      return el('option', { value: name }, `${name} (${n})`);
    }),
  );
  sel.value = state.namespace;
}

/** Follows the chosen namespace's events (one namespace at a time). */
async function follow(namespace: string): Promise<void> {
  const c = client();
  if (state.subscribed === namespace) return;
  if (state.subscribed !== null) await c.unsubscribe(null, { namespace: state.subscribed });
  await c.subscribe(null, undefined, { namespace });
  state.subscribed = namespace;
}

function readFilter(): Record<string, unknown> | undefined {
  const raw = $<HTMLInputElement>(tid('browser-filter')).value.trim();
  if (raw === '') return undefined;
  let f: unknown;
  try {
    f = JSON.parse(raw);
  } catch (err) {
    throw new Error(`the filter is not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof f !== 'object' || f === null || Array.isArray(f)) throw new Error('the filter must be a JSON object');
  return f as Record<string, unknown>;
}

async function showList(): Promise<void> {
  const filter = readFilter();
  await follow(state.namespace);
  const reply = await client().list({ namespace: state.namespace, limit: PAGE, ...(filter ? { filter } : {}) });
  state.search = null;
  state.rows = reply.memories;
  state.cursor = reply.next_cursor;
  renderRows();
}

async function loadMore(): Promise<void> {
  if (state.cursor === null || state.search) return;
  const filter = readFilter();
  const reply = await client().list({ namespace: state.namespace, limit: PAGE, cursor: state.cursor, ...(filter ? { filter } : {}) });
  const seen = new Set(state.rows.map((m) => m.id));
  state.rows.push(...reply.memories.filter((m) => !seen.has(m.id)));
  state.cursor = reply.next_cursor;
  renderRows();
}

async function search(): Promise<void> {
  const query = $<HTMLInputElement>(tid('browser-query')).value.trim();
  if (query === '') return showList();
  const mode = $<HTMLSelectElement>(tid('browser-mode')).value as Mode;
  const filter = readFilter();
  await follow(state.namespace);
  // `mode` is the retrieve option for text and hybrid search; vector is the server's default.
  const options = { namespace: state.namespace, query, count: PAGE, ...(filter ? { filter } : {}), ...(mode === 'vector' ? {} : { mode }) };
  const reply = await client().retrieve(options as RetrieveOptions);
  state.search = { query, mode };
  state.rows = reply.memories;
  state.cursor = null;
  renderRows();
}

function rowFor(m: WireMemory): HTMLElement {
  const row = el('li', { class: 'b-row', 'data-testid': 'browser-row', 'data-id': m.id });
  const text = el('span', { class: 'b-text' }, m.text.length > 140 ? `${m.text.slice(0, 140)}…` : m.text);
  // Which rankings scored it (text / hybrid search): `vector #2 · text #1`.
  const signals = m.signals ? Object.entries(m.signals).map(([k, v]) => ` · ${k} #${v.rank}`).join('') : '';
  const meta = el('span', { class: 'b-meta' }, `${m.significance.toFixed(2)}${m.score !== undefined ? ` · score ${m.score.toFixed(3)}` : ''}${signals}`);
  row.append(text, meta);
  row.addEventListener('click', () => void run('open', () => openMemory(m.id)));
  if (state.open?.id === m.id) row.classList.add('open');
  return row;
}

function renderRows(): void {
  const list = $(tid('browser-rows'));
  list.replaceChildren(...state.rows.map(rowFor));
  const what = state.search ? `${state.rows.length} found (${state.search.mode})` : `${state.rows.length} shown${state.cursor !== null ? ', more' : ''}`;
  $(tid('browser-count')).textContent = what;
  $<HTMLButtonElement>(tid('browser-more')).hidden = state.cursor === null || state.search !== null;
}

async function openMemory(id: string): Promise<void> {
  const m = await client().get(id, { namespace: state.namespace });
  state.open = m;
  renderDetail();
  renderRows();
}

function renderDetail(): void {
  const box = $(tid('browser-detail'));
  const m = state.open;
  box.hidden = m === null;
  if (!m) return;
  box.setAttribute('data-id', m.id);
  $(tid('browser-detail-id')).textContent = m.id;
  $(tid('browser-detail-text')).textContent = m.text;
  $(tid('browser-detail-significance')).textContent = m.significance.toFixed(4);
  $(tid('browser-detail-time')).textContent = m.timestamp + (m.expires_at ? ` (expires ${m.expires_at})` : '');
  $<HTMLTextAreaElement>(tid('browser-metadata')).value = JSON.stringify(m.metadata, null, 2);
  const assoc = $(tid('browser-assoc'));
  assoc.replaceChildren(
    ...(m.associations.length === 0
      ? [el('span', { class: 'muted' }, 'none')]
      : m.associations.map((a) => {
          const b = el('button', { type: 'button', class: 'link', 'data-testid': 'browser-assoc-link', 'data-id': a }, a);
          b.addEventListener('click', () => void run('open', () => openMemory(a)));
          return b;
        })),
  );
  const del = $<HTMLButtonElement>(tid('browser-delete'));
  del.textContent = 'Delete';
  del.removeAttribute('data-armed');
}

async function saveMetadata(): Promise<void> {
  const m = state.open;
  if (!m) return;
  let metadata: unknown;
  try {
    metadata = JSON.parse($<HTMLTextAreaElement>(tid('browser-metadata')).value);
  } catch (err) {
    throw new Error(`the metadata is not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) throw new Error('the metadata must be a JSON object');
  state.open = await client().update(m.id, { metadata: metadata as Record<string, unknown> }, { namespace: state.namespace });
  replaceRow(state.open);
  renderDetail();
}

/** Two clicks: the first arms the button (no dialog, which a headless browser dismisses). */
async function deleteOpen(): Promise<void> {
  const m = state.open;
  const del = $<HTMLButtonElement>(tid('browser-delete'));
  if (!m) return;
  if (!del.hasAttribute('data-armed')) {
    del.setAttribute('data-armed', '');
    del.textContent = 'Confirm delete';
    return;
  }
  await client().delete(m.id, { namespace: state.namespace });
  removeRow(m.id);
}

function replaceRow(m: WireMemory): void {
  const i = state.rows.findIndex((r) => r.id === m.id);
  if (i >= 0) state.rows[i] = { ...m, ...(state.rows[i]!.score !== undefined ? { score: state.rows[i]!.score } : {}) };
  renderRows();
}

function removeRow(id: string): void {
  state.rows = state.rows.filter((r) => r.id !== id);
  if (state.open?.id === id) {
    state.open = null;
    renderDetail();
  }
  renderRows();
}

/** Live updates: new memories appear at the top of the list (not of a search result). */
function onEvent(ev: MemoryEvent): void {
  if (ev.namespace !== state.namespace) return;
  if (ev.type === 'memory_removed') return removeRow(ev.memory.id);
  const m = ev.memory as WireMemory;
  if (ev.type === 'memory_updated') {
    replaceRow(m);
    if (state.open?.id === m.id) {
      state.open = m;
      renderDetail();
    }
    return;
  }
  if (state.search === null && !state.rows.some((r) => r.id === m.id)) {
    state.rows.unshift(m);
    renderRows();
  }
}

export function initBrowser(authToken: string | null): void {
  token = authToken;
  $(tid('browser-namespace')).addEventListener('change', (e) => {
    state.namespace = (e.target as HTMLSelectElement).value;
    state.open = null;
    renderDetail();
    void run('list', showList);
  });
  $(tid('browser-refresh')).addEventListener('click', () =>
    void run('refresh', async () => {
      await refreshNamespaces();
      await showList();
    }),
  );
  $(tid('browser-form')).addEventListener('submit', (e) => {
    e.preventDefault();
    void run('search', search);
  });
  $(tid('browser-more')).addEventListener('click', () => void run('load more', loadMore));
  $(tid('browser-save')).addEventListener('click', () => void run('save', saveMetadata));
  $(tid('browser-delete')).addEventListener('click', () => void run('delete', deleteOpen));
  $(tid('browser-close')).addEventListener('click', () => {
    state.open = null;
    renderDetail();
    renderRows();
  });
}
