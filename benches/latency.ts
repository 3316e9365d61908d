// Latency of hello-world through the functions server, against the same handler run
// directly under Bun.serve on this machine.
//
//   cargo build --release && bun/node_modules/.bin/bun benches/latency.ts [--warm N] [--cold N]
//
// Cold: the pool's idle worker is reaped (idle_timeout=1ms) before each request, so each
// request starts a fresh Bun worker. Warm: sequential requests on one keep-alive
// connection to a ready worker. Prints medians and p99 in milliseconds, and the ratio
// of the server's warm median to Bun.serve's.

import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startFunctions } from "./server.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const WARM = arg("--warm", 2000);
const COLD = arg("--cold", 15);
const ROOT = resolve(import.meta.dir, "..");
const BINARY = join(ROOT, "target/release/functions");
const HANDLER = `export default function (request) { return new Response("Hello, world!\\n"); }\n`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))];

async function time(url: string): Promise<[number, Response]> {
  const start = performance.now();
  const res = await fetch(url);
  await res.arrayBuffer();
  return [performance.now() - start, res];
}

async function warm(url: string): Promise<number[]> {
  for (let i = 0; i < 200; i++) await time(url);
  const samples: number[] = [];
  for (let i = 0; i < WARM; i++) samples.push((await time(url))[0]);
  return samples;
}

const startServer = (idle: string) =>
  startFunctions(BINARY, join(ROOT, "bun/node_modules/.bin/bun"), "hello.ts", HANDLER, idle);

// Direct Bun.serve of the same handler, in a child Bun process like our workers.
async function bunServe(): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "bench-direct-"));
  writeFileSync(join(dir, "hello.js"), HANDLER);
  writeFileSync(join(dir, "serve.js"),
    `import h from "./hello.js"; const s = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: h }); console.log(s.port);\n`);
  const proc = Bun.spawn([process.execPath, join(dir, "serve.js")], { stdout: "pipe" });
  const { value } = await proc.stdout.getReader().read();
  const port = Number(new TextDecoder().decode(value).trim());
  return { url: `http://127.0.0.1:${port}/`, stop: async () => { proc.kill(); await proc.exited; rmSync(dir, { recursive: true, force: true }); } };
}

const report = (label: string, xs: number[]) =>
  console.log(`${label.padEnd(28)} n=${String(xs.length).padStart(5)}  median=${median(xs).toFixed(3)} ms  p99=${p99(xs).toFixed(3)} ms`);

const server = await startServer("5m");
const ours = await warm(server.url);
await server.stop();

const coldServer = await startServer("1ms");
const cold: number[] = [];
for (let i = 0; i < COLD; i++) {
  await sleep(1200); // the maintenance pass (every 500 ms) reaps the idle worker
  const [ms, res] = await time(coldServer.url);
  if (res.headers.get("x-cold-start") !== "true") throw new Error("expected a cold start");
  cold.push(ms);
}
await coldServer.stop();

const direct = await bunServe();
const theirs = await warm(direct.url);
await direct.stop();

report("functions warm", ours);
report("functions cold", cold);
report("Bun.serve direct", theirs);
console.log(`warm ratio functions/Bun.serve: ${(median(ours) / median(theirs)).toFixed(2)}x`);
