// examples/webhook/backend.mjs: the same backend in Node.js, no packages.
// Run: node backend.mjs 8000 hook.secret
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const [port, secretFile] = process.argv.slice(2);
const keys = readFileSync(secretFile, "utf8").split("\n")
  .filter((line) => line.startsWith("whsec_"))
  .map((line) => Buffer.from(line.trim().slice(6), "base64"));

function verified(req, body) {
  const id = req.headers["webhook-id"], ts = req.headers["webhook-timestamp"];
  if (!id || !ts || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false;
  const signed = Buffer.concat([Buffer.from(`${id}.${ts}.`), body]);
  const given = (req.headers["webhook-signature"] || "").split(" ");
  return keys.some((key) => {
    const mine = Buffer.from("v1," + createHmac("sha256", key).update(signed).digest("base64"));
    return given.some((sig) => sig.length === mine.length && timingSafeEqual(Buffer.from(sig), mine));
  });
}

createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (!verified(req, body)) { res.writeHead(401).end("bad signature"); return; }
    const event = JSON.parse(body);
    if (event.type !== "message") { res.writeHead(204).end(); return; }
    const count = ((event.state || {}).count || 0) + 1;
    res.writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ messages: [{ text: `#${count}: ${event.message}` }], state: { count } }));
  });
}).listen(Number(port), "127.0.0.1");
