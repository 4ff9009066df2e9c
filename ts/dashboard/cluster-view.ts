/**
 * The memory card's cluster section (docs/cluster.md): in cluster mode, the NATS server the
 * memory server talks to and a table of the live members (node id, URL, applied sequence,
 * lag). Hidden on a single server.
 */
import type { ClusterStatus } from '../protocol/control.js';
import { el, tid } from './dom.js';

export const CLUSTER_COLUMNS = ['Node', 'URL', 'Applied seq', 'Lag'] as const;

/** The table's rows: one per live member (this instance marked), as shown. */
export function clusterRows(c: ClusterStatus): string[][] {
  // Before its first membership read, an instance knows only itself.
  const members = c.members.length > 0 ? c.members : [{ node_id: c.node_id, url: null, applied_seq: c.applied_seq, lag: c.lag }];
  return members.map((m) => [m.node_id === c.node_id ? `${m.node_id} (this)` : m.node_id, m.url ?? '—', String(m.applied_seq), String(m.lag)]);
}

/** The one-line summary above the table. */
export const clusterSummary = (c: ClusterStatus): string =>
  `NATS server ${c.nats_server ?? '—'} · stream seq ${c.stream_seq} · lag ${c.lag} · ${c.members.length} member${c.members.length === 1 ? '' : 's'}`;

/** Creates, updates or hides the cluster section of `card` (`key`: the component's key). */
export function renderCluster(card: HTMLElement, key: string, c: ClusterStatus | undefined): void {
  let section = card.querySelector<HTMLElement>(tid(`${key}-cluster`));
  if (!c) {
    if (section) section.hidden = true;
    return;
  }
  if (!section) {
    section = el('section', { class: 'cluster', 'data-testid': `${key}-cluster` });
    section.append(el('h3', {}, 'Cluster'), el('p', { 'data-testid': `${key}-cluster-summary` }));
    const table = el('table', { 'data-testid': `${key}-cluster-members` });
    const head = el('tr');
    for (const col of CLUSTER_COLUMNS) head.append(el('th', {}, col));
    table.append(el('thead'), el('tbody'));
    table.tHead!.append(head);
    section.append(table);
    // Above the error line and the buttons.
    card.insertBefore(section, card.querySelector(tid(`${key}-error`)));
  }
  section.hidden = false;
  section.querySelector(tid(`${key}-cluster-summary`))!.textContent = clusterSummary(c);
  const body = section.querySelector('tbody')!;
  body.replaceChildren(
    ...clusterRows(c).map((cells) => {
      const tr = el('tr');
      for (const cell of cells) tr.append(el('td', {}, cell));
      return tr;
    }),
  );
}
