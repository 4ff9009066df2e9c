/**
 * A TCP forwarder with a fixed port whose backend can change: lets a test restart a
 * server (same data dir) while clients keep one URL, without waiting for the old
 * port's TIME_WAIT sockets. With no backend, connections are cut at once.
 */
import net from 'node:net';

export interface TcpProxy {
  port: number;
  url: string;
  setTarget(port: number | null): void;
  close(): Promise<void>;
}

export async function tcpProxy(targetPort: number | null): Promise<TcpProxy> {
  let target = targetPort;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (target === null) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      // end(), not destroy(): what the server sent last (its close frame) may still sit in
      // the client socket's buffer, and destroy() would drop it (the client then sees 1006).
      client.end();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    setTarget(p) {
      target = p;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
