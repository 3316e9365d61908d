// Bun.serve running handler.mjs directly: the baseline of benches/compare.sh.
import handler from "./handler.mjs";

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  fetch: handler.fetch,
});
console.log(`listening ${server.port}`);
