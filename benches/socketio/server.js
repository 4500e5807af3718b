// One Socket.IO 4 worker for the fan-out benchmark (benches/src/bin/fanout.rs).
// Two of these run side by side, each on its own port, joined by the Redis
// adapter, so a broadcast to a room reaches members on the other worker
// through redis-server, as in a real multi-process Socket.IO deployment.
//
// Events, all with string payloads (no binary attachments):
//   "join", room       -> the socket joins the room (acknowledged, so the
//                         client knows it is in before anything is sent)
//   "pub", room, body  -> io.to(room).emit("m", body): every member of the
//                         room, the sender included, on every worker
//
// Environment: PORT, REDIS_URL, and TLS_CERT + TLS_KEY (PEM paths) for
// HTTPS/WSS; without them the worker serves plain HTTP/WS.
"use strict";

const fs = require("fs");
const http = require("http");
const https = require("https");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

async function main() {
  const port = Number(process.env.PORT || 0);
  const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
  const server =
    process.env.TLS_CERT && process.env.TLS_KEY
      ? https.createServer({
          cert: fs.readFileSync(process.env.TLS_CERT),
          key: fs.readFileSync(process.env.TLS_KEY),
        })
      : http.createServer();

  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  // The benchmark stops the workers before redis-server; losing redis
  // otherwise is fatal (a worker that cannot broadcast would lose messages).
  for (const c of [pub, sub]) {
    c.on("error", (e) => {
      console.error(`redis: ${e.message}`);
      process.exit(1);
    });
  }
  await Promise.all([pub.connect(), sub.connect()]);

  const io = new Server(server, {
    adapter: createAdapter(pub, sub),
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    maxHttpBufferSize: 1e6,
  });

  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      if (typeof room === "string") socket.join(room);
      if (typeof ack === "function") ack("ok");
    });
    socket.on("pub", (room, body) => {
      if (typeof room === "string" && typeof body === "string") {
        io.to(room).emit("m", body);
      }
    });
  });

  server.listen(port, "127.0.0.1", () => {
    // The load generator waits for this line.
    console.log(`listening ${server.address().port}`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
