// The lobby fan-out of lct written the way users build it with Socket.IO: one room per
// tournament, the Redis adapter carrying every emit to the other processes, and the
// TeamClicked list (each player's latest click) broadcast to the room on every click.
//
// Start: PORT=0 REDIS_URL=redis://127.0.0.1:6379 node server.js
// It prints one JSON line {"message":"listening","addr":"127.0.0.1:<port>"} when ready.
// Clients connect with ?tournamentId=<lobby>; they emit "TeamClicked" {team, name, surname}
// with an acknowledgement and receive "TeamClicked" {type, tournamentId, clickedTeams}.

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const TEAMS = new Set([
  "Bayern", "PSG", "Manchaster City", "Liverpool", "Machester United",
  "Real Madrid", "Chelsea", "Atletico Madrid", "Juventus", "Barcelona",
]);

async function main() {
  const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(pub, sub),
  });

  // The latest click of each player per lobby, held by the process the clicker is connected to.
  const clicks = new Map();

  io.on("connection", (socket) => {
    const lobby = String(socket.handshake.query.tournamentId || "");
    if (!lobby) {
      socket.disconnect(true);
      return;
    }
    socket.join(lobby);
    socket.on("TeamClicked", (click, ack) => {
      const ok = click && TEAMS.has(click.team) && typeof click.name === "string" && typeof click.surname === "string";
      if (!ok) {
        if (typeof ack === "function") ack({ error: "invalid click" });
        return;
      }
      let lobbyClicks = clicks.get(lobby);
      if (!lobbyClicks) clicks.set(lobby, (lobbyClicks = new Map()));
      lobbyClicks.set(`${click.name}\u001f${click.surname}`, { team: click.team, name: click.name, surname: click.surname });
      io.to(lobby).emit("TeamClicked", {
        type: "TeamClicked",
        tournamentId: lobby,
        clickedTeams: [...lobbyClicks.values()],
      });
      if (typeof ack === "function") ack({});
    });
  });

  httpServer.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
    const { address, port } = httpServer.address();
    console.log(JSON.stringify({ message: "listening", addr: `${address}:${port}` }));
  });

  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
