// The `ws` package's counterpart of uws-floor-server.js: the least a JSON server on `ws` can do
// per request. Each text frame is JSON.parse'd and answered with one reply string built around
// the request's type and id, whose data is the same fixed `stats`-sized body. No handler, store
// call, ordering queue or metrics. Beside the uWS.js reference it measures the two transports
// alone: uws-floor / ws-floor saturation is the largest ours / ws ratio that any handler could
// give (a handler costs both servers the same CPU per request, which narrows the ratio).
// Same socket options as the ws baseline (ws-memory-server.js).
import { WebSocketServer } from 'ws';

export function startWsFloorServer({ host = '127.0.0.1', port = 0, dataJson, maxPayload = 1 << 20 }) {
  const tail = `,"timestamp":"${new Date().toISOString()}","data":${dataJson}}`;
  const sockets = new Set();
  const wss = new WebSocketServer({ host, port, maxPayload, perMessageDeflate: false, clientTracking: false });
  wss.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('message', (data, isBinary) => {
      if (isBinary) return void socket.close(1003, 'text frames only');
      // `data` is a Buffer (or a list of fragments); toString gives the frame's text.
      const req = JSON.parse(Array.isArray(data) ? Buffer.concat(data).toString() : data.toString());
      socket.send(`{"status":"success","type":${JSON.stringify(req.type)},"id":${JSON.stringify(req.id)}${tail}`);
    });
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  return new Promise((resolve, reject) => {
    wss.once('error', reject);
    wss.once('listening', () => {
      resolve({
        port: wss.address().port,
        connectionCount: () => sockets.size,
        close: () =>
          new Promise((r) => {
            for (const s of sockets) s.terminate();
            wss.close(() => r());
          }),
      });
    });
  });
}
