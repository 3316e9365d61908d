// Start-up and memory figures for benches/compare.sh, printed as `KEY value` lines:
//
//   bun benches/compare/startup.ts FUNCTIONS_BINARY BUN [RUNS]
//
// - bare_bun_ms: median wall time of `bun -e 0` (spawn to exit), RUNS times;
// - cold_ms / cold_p99_ms: spawn-to-first-answer of a cold invocation: a server with
//   idle_timeout=1ms reaps the worker between requests, so each GET starts a new one
//   (X-Cold-Start: true is checked);
// - server_idle_kib: the control plane's VmRSS with one idle warm worker;
// - worker_idle_kib: that worker's VmRSS after 200 requests;
// - bare_bundle_kib: VmRSS of a bare Bun process that imported the same bundle.
import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { startFunctions } from "../server.ts";

const [binary, bun, runsArg] = process.argv.slice(2);
const RUNS = Number(runsArg ?? 20);
const HERE = import.meta.dir;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => sorted(xs)[Math.floor(xs.length / 2)];
const p99 = (xs: number[]) => sorted(xs)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))];
const rss = (pid: number) => Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)![1]);
const children = (pid: number): number[] =>
  readdirSync(`/proc/${pid}/task`).flatMap((t) =>
    readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));

const startServer = (idle: string) =>
  startFunctions(binary, bun, "hello.js", readFileSync(join(HERE, "handler.mjs"), "utf8"), idle);

async function timed(url: string): Promise<[number, Response]> {
  const start = performance.now();
  const res = await fetch(url);
  await res.arrayBuffer();
  return [performance.now() - start, res];
}

// Bare Bun start-up.
const bare: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const start = performance.now();
  await Bun.spawn([bun, "-e", "0"]).exited;
  bare.push(performance.now() - start);
}
console.log(`bare_bun_ms ${median(bare).toFixed(1)}`);

// Cold starts.
const cold = await startServer("1ms");
await timed(cold.url);
const colds: number[] = [];
for (let i = 0; i < RUNS; i++) {
  await sleep(1200); // the maintenance pass (every 500 ms) reaps the idle worker
  const [ms, res] = await timed(cold.url);
  if (res.headers.get("x-cold-start") !== "true") throw new Error("expected a cold start");
  colds.push(ms);
}
await cold.stop();
console.log(`cold_ms ${median(colds).toFixed(1)}`);
console.log(`cold_p99_ms ${p99(colds).toFixed(1)}`);

// Memory with one warm idle worker, and a bare Bun that imported the same bundle.
const warm = await startServer("5m");
for (let i = 0; i < 200; i++) await timed(warm.url);
await sleep(1000);
const workers = children(warm.proc.pid);
console.log(`server_idle_kib ${rss(warm.proc.pid)}`);
console.log(`worker_idle_kib ${workers.length === 1 ? rss(workers[0]) : 0}`);
const bundle = (() => {
  const root = join(warm.dir, "data", "bundles");
  const find = (dir: string): string | undefined => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) { const found = find(path); if (found) return found; }
      else if (entry.name === "bundle.js") return path;
    }
  };
  return find(root)!;
})();
const loaded = Bun.spawn([bun, "-e", `await import(${JSON.stringify(resolve(bundle))}); console.log("ok"); setInterval(() => {}, 1e9);`], { stdout: "pipe" });
await loaded.stdout.getReader().read();
await sleep(1000);
console.log(`bare_bundle_kib ${rss(loaded.pid)}`);
loaded.kill();
await loaded.exited;
await warm.stop();
