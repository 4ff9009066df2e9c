/**
 * Cluster options (`--cluster nats://…` and friends; docs/cluster.md). Plain data, no NATS
 * import: the server and the CLI read these without loading the NATS client.
 */
export interface ClusterOptions {
  /** NATS server URLs (`nats://host:port`), any of the JetStream cluster's servers. */
  servers: string[];
  /** The cluster's name: names its stream, buckets and subjects. Default `memory`. */
  name?: string;
  /** This instance's id in the cluster. Default `<hostname>-<pid>-<random>`. */
  nodeId?: string;
  /** Replicas of the stream when this instance creates it. Default 3 with ≥ 3 server URLs, else 1. */
  replicas?: number;
  /** NATS credentials: user/password, token, or a `.creds` file (JWT + nkey seed). */
  user?: string;
  pass?: string;
  token?: string;
  credsFile?: string;
  /** TLS to NATS: CA to trust, and a client certificate and key (mutual TLS). */
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** How long a write waits for JetStream's publish ack (quorum) before `unavailable`. Default 5000. */
  publishTimeoutMs?: number;
  /** The URL clients reach this instance at, shown in the membership bucket (default: ws://host:port). */
  advertiseUrl?: string;
  /** Seconds between snapshots written by the elected instance (0: none). Default 300. */
  snapshotIntervalS?: number;
}

/** A valid stream/bucket name fragment of the cluster name. */
export function clusterToken(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** Resolved names of everything the cluster keeps in NATS. */
export function clusterNames(name = 'memory') {
  const t = clusterToken(name);
  return {
    stream: `MEMORY_${t}`,
    subject: `memory.${t}.writes`,
    membersBucket: `memory_${t}_members`,
    snapshotsBucket: `memory_${t}_snapshots`,
  };
}
