// Reference point for the `stats` CPU figure: the least a JSON server on uWebSockets.js can do
// per request. Each text frame is decoded and JSON.parse'd, and answered with one reply string
// built around the request's type and id, whose data is a fixed `stats`-sized body (the text
// of a real global `stats` reply, taken once at start). No handler, store call, rate limiter,
// metrics, ordering queue or keep-alive: what is left is uWS.js, the V8 boundary and the
// kernel's loopback TCP. Same uWS.js build (the server's own loader, dist/server/uws.js, never
// the package's entry point with its JS fallback) and socket options as WsServer.
import { uWS } from '../../dist/server/uws.js';

export function startUwsFloorServer({ host = '127.0.0.1', port = 0, dataJson }) {
  const decoder = new TextDecoder();
  const tail = `,"timestamp":"${new Date().toISOString()}","data":${dataJson}}`;
  let count = 0;
  const app = uWS.App().ws('/*', {
    maxPayloadLength: 1 << 20,
    idleTimeout: 0,
    sendPingsAutomatically: false,
    compression: uWS.DISABLED,
    open: () => count++,
    close: () => count--,
    message: (ws, message, isBinary) => {
      if (isBinary) return void ws.end(1003, 'text frames only');
      const req = JSON.parse(decoder.decode(message));
      ws.send(`{"status":"success","type":${JSON.stringify(req.type)},"id":${JSON.stringify(req.id)}${tail}`, false);
    },
  });
  return new Promise((resolve, reject) => {
    app.listen(host, port, (token) => {
      if (!token) return reject(new Error('uws-floor: listen failed'));
      resolve({
        port: uWS.us_socket_local_port(token),
        connectionCount: () => count,
        async close() {
          uWS.us_listen_socket_close(token);
          app.close?.();
        },
      });
    });
  });
}
