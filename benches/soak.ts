// Soak test: the server under a steady mix of good and faulty functions, on loopback.
//
//   cargo build --release && bun/node_modules/.bin/bun benches/soak.ts [--seconds 60] [--clients 16]
//
// Builds nothing: it runs target/release/functions with bun/node_modules/.bin/bun, on a
// free port of 127.0.0.1, with a temp functions dir and data dir (removed at the end).
// The clients call every function in turn for the duration and check each answer's
// status and error code; the server's threads and RSS are sampled every second, with
// its zombie children. Then it stops the clients, sends SIGTERM and checks the server
// exits 0 within shutdown_grace and leaves no process behind. Exits 1 on any failure.

import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const SECONDS = Math.min(arg("--seconds", 60), 120);
const CLIENTS = arg("--clients", 16);
const ROOT = resolve(import.meta.dir, "..");
const BINARY = join(ROOT, "target/release/functions");
const BUN = join(ROOT, "bun/node_modules/.bin/bun");
const MAX_WORKERS = 2;
const GRACE_S = 5;
// --close: a new connection per request instead of keep-alive.
const KEEPALIVE = !args.includes("--close");
const SLEEP_MARK = "600.0917"; // the spawner's `sleep` argument, to find its children

// name -> [source, expected status, expected error code or null]. hog may also get 504
// `timeout`: a call queued behind the others for its function past invocation_timeout.
const FUNCTIONS: Record<string, [string, number, string | null]> = {
  hello: [`export default () => new Response("hello\\n");`, 200, null],
  echo: [`export default async (r: Request) => Response.json(await r.json());`, 200, null],
  sleeper: [
    `export default async () => { await new Promise((ok) => setTimeout(ok, 50)); return new Response("slept"); };`,
    200,
    null,
  ],
  throws: [`export default () => { throw new Error("soak failure"); };`, 500, "function_error"],
  hang: [`export default () => new Promise<Response>(() => {});`, 504, "timeout"],
  spin: [`export default () => { for (;;) {} };`, 504, "timeout"],
  exit: [`export default () => { process.exit(7); };`, 502, "worker_crashed"],
  hog: [
    // About 160 MiB touched and held until the RSS poll (every 500 ms) kills the worker.
    `const keep: Uint8Array[] = [];
     export default () => {
       keep.push(new Uint8Array(160 << 20).fill(1));
       return new Promise<Response>(() => {});
     };`,
    502,
    "worker_crashed",
  ],
  flood: [
    // 2 MB of output per call, over the 1M log_invocation_max.
    `export default () => { const l = "f".repeat(199); for (let i = 0; i < 10000; i++) console.log(l); return new Response("flooded"); };`,
    200,
    null,
  ],
  spawner: [
    // Up to three long `sleep` children per worker, left running: they must die with it.
    `let started = 0;
     export default () => {
       if (started < 3) { Bun.spawn(["sleep", "${SLEEP_MARK}"]); started++; }
       return new Response(String(started));
     };`,
    200,
    null,
  ],
};
const NAMES = Object.keys(FUNCTIONS);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- /proc ------------------------------------------------------------------

function stat(pid: number): { state: string; ppid: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    return "";
  }
}

function allPids(): number[] {
  return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number);
}

function descendants(root: number): number[] {
  const table = allPids().map((p) => [p, stat(p)?.ppid ?? -1] as const);
  const out: number[] = [];
  const frontier = [root];
  while (frontier.length) {
    const parent = frontier.pop()!;
    for (const [child, ppid] of table) {
      if (ppid === parent) {
        out.push(child);
        frontier.push(child);
      }
    }
  }
  return out;
}

function statusField(pid: number, field: string): number {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = text.match(new RegExp(`^${field}:\\s+(\\d+)`, "m"));
  return m ? Number(m[1]) : 0;
}

// ---- the server -------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "soak-"));
const functionsDir = join(dir, "functions");
const dataDir = join(dir, "data");
Bun.spawnSync(["mkdir", "-p", functionsDir, dataDir]);
for (const [name, [source]] of Object.entries(FUNCTIONS)) writeFileSync(join(functionsDir, `${name}.ts`), source);
const conf = join(dir, "functions.conf");
writeFileSync(
  conf,
  [
    `bun_path = ${BUN}`,
    `invocation_timeout = 2s`,
    `memory_limit = 128M`,
    `max_workers = ${MAX_WORKERS}`,
    `shutdown_grace = ${GRACE_S}s`,
    `log_invocation_max = 1M`,
    `log_level = info`,
    "",
  ].join("\n"),
);

const server = Bun.spawn(
  [BINARY, "serve", "--config", conf, "--data-dir", dataDir, "--http-port", "0", "--functions-dir", functionsDir],
  { stderr: "pipe", stdout: "ignore", stdin: "ignore" },
);
const tail: string[] = [];
let port = 0;
(async () => {
  // Drained for the whole run: a full pipe would block the server.
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of server.stderr) {
    pending += decoder.decode(chunk);
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      if (!port) {
        const m = line.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
        if (m) port = Number(m[1]);
      }
      if (process.env.SOAK_LOG) appendFileSync(process.env.SOAK_LOG, line + "\n");
      tail.push(line);
      if (tail.length > 2000) tail.shift();
    }
  }
})();
const startDeadline = Date.now() + 60_000;
while (!port) {
  if (server.exitCode !== null || Date.now() > startDeadline) {
    console.error(`server did not start:\n${tail.join("\n")}`);
    process.exit(1);
  }
  await sleep(50);
}
const base = `http://127.0.0.1:${port}/functions/`;
for (const name of NAMES) {
  // Warm each good function once so the first samples are not all cold starts.
  if (FUNCTIONS[name][1] === 200) await fetch(base + name, name === "echo" ? { method: "POST", body: "{}" } : {}).then((r) => r.arrayBuffer());
}
const idleThreads = statusField(server.pid, "Threads");

// Threads: the gateway's 16 kept threads and a few service threads (measured at idle),
// one more gateway thread per client past 16 (each client has one request in flight),
// three pipe threads per live worker, and tiny_http's thread per open connection plus a
// short-lived stop thread per replaced worker. Anything growing per request breaks it.
const HTTP_THREADS = 16;
const THREAD_BOUND =
  idleThreads + Math.max(0, CLIENTS - HTTP_THREADS) + 3 * MAX_WORKERS * NAMES.length + 2 * CLIENTS + 16;
// RSS: no request or response here is over a few MiB; the server's own buffers (log
// batches, 64 KiB line buffers per worker, SQLite caches) stay in tens of MiB. 128 MiB
// leaves room for allocator slack and fails on a leak of a few KiB per request.
const RSS_BOUND_KB = 128 * 1024;

// ---- the clients ------------------------------------------------------------

const counts: Record<string, Record<string, number>> = {};
const failures: string[] = [];
let errors = 0;
let requests = 0;
const count = (name: string, key: string) => {
  counts[name] ??= {};
  counts[name][key] = (counts[name][key] ?? 0) + 1;
};

async function call(name: string, n: number): Promise<void> {
  const [, status, code] = FUNCTIONS[name];
  const init: RequestInit = name === "echo" ? { method: "POST", body: JSON.stringify({ n }), headers: { "content-type": "application/json" } } : {};
  try {
    // No answer within 20 s (the slowest expected is 2 s) counts as an error.
    const res = await fetch(base + name, { ...init, keepalive: KEEPALIVE, signal: AbortSignal.timeout(20_000) });
    const body = await res.text();
    requests++;
    count(name, String(res.status));
    const queuedOut = name === "hog" && res.status === 504 && JSON.parse(body)?.error?.code === "timeout";
    let ok = res.status === status || queuedOut;
    if (ok && code && !queuedOut) ok = JSON.parse(body)?.error?.code === code;
    if (ok && name === "echo") ok = JSON.parse(body)?.n === n;
    if (ok && name === "hog" && !queuedOut) ok = body.includes("memory limit");
    if (!ok && failures.length < 20) failures.push(`${name}: ${res.status} ${body.slice(0, 200)}`);
    if (!ok) count(name, "unexpected");
  } catch (e) {
    errors++;
    count(name, "error");
    if (failures.length < 20) failures.push(`${name}: ${e}`);
  }
}

let running = true;
const started = Date.now();
const clients = Array.from({ length: CLIENTS }, async (_, c) => {
  for (let i = c; running; i++) await call(NAMES[i % NAMES.length], i);
});

let peakRss = 0;
let peakThreads = 0;
let lingeringZombies = 0;
let lastZombies = new Set<number>();
while (Date.now() - started < SECONDS * 1000) {
  await sleep(1000);
  peakRss = Math.max(peakRss, statusField(server.pid, "VmRSS"));
  peakThreads = Math.max(peakThreads, statusField(server.pid, "Threads"));
  // A zombie seen on two samples in a row (a second apart) was not reaped.
  const zombies = new Set(allPids().filter((p) => { const s = stat(p); return s?.ppid === server.pid && s.state === "Z"; }));
  for (const z of zombies) if (lastZombies.has(z)) lingeringZombies++;
  lastZombies = zombies;
  if (process.env.SOAK_DEBUG) console.error(`${((Date.now() - started) / 1000).toFixed(0)} s: ${requests} answers, ${errors} errors`);
}
running = false;
await Promise.all(clients);
const elapsed = (Date.now() - started) / 1000;

// ---- shutdown ---------------------------------------------------------------

const before = descendants(server.pid);
const workersBefore = before.filter((p) => cmdline(p).includes("bun")).length;
const sleepersBefore = before.filter((p) => cmdline(p) === `sleep ${SLEEP_MARK}`).length;
const stopAt = Date.now();
server.kill("SIGTERM");
const exited = await Promise.race([server.exited, sleep((GRACE_S + 5) * 1000).then(() => null)]);
const stopSeconds = (Date.now() - stopAt) / 1000;
if (exited === null) server.kill("SIGKILL");
await sleep(500);
const ours = allPids().filter((p) => before.includes(p) || cmdline(p) === `sleep ${SLEEP_MARK}` || cmdline(p).includes(dir));
// A process of the server's tree that died after the server (a `sleep` killed with its
// worker's group) is reparented to pid 1 and reaped there; an init that never reaps (as
// in some VMs and containers) keeps it as a zombie. Those are listed, not failed.
const orphanZombies = ours.filter((p) => { const s = stat(p); return s?.state === "Z" && s.ppid === 1; });
const left = ours.filter((p) => stat(p) && !orphanZombies.includes(p));

// ---- summary ----------------------------------------------------------------

console.log(`soak: ${CLIENTS} clients for ${elapsed.toFixed(1)} s, ${requests} answers (${(requests / elapsed).toFixed(0)}/s), ${errors} connection errors`);
for (const name of NAMES) {
  const [, status] = FUNCTIONS[name];
  const by = Object.entries(counts[name] ?? {}).map(([k, v]) => `${k}: ${v}`).join(", ");
  console.log(`  ${name.padEnd(8)} expect ${status}  ${by}`);
}
console.log(`server peak RSS ${(peakRss / 1024).toFixed(1)} MiB (bound ${RSS_BOUND_KB / 1024} MiB), peak threads ${peakThreads} (idle ${idleThreads}, bound ${THREAD_BOUND})`);
console.log(`zombie children seen on two samples in a row: ${lingeringZombies}`);
console.log(`before SIGTERM: ${before.length} descendants (${workersBefore} Bun workers, ${sleepersBefore} sleep children)`);
console.log(`SIGTERM: exit ${exited === null ? "none (killed)" : exited} after ${stopSeconds.toFixed(2)} s (grace ${GRACE_S} s); processes left: ${left.length}`);
for (const p of left) console.log(`  left: ${p} ${stat(p)?.state} ${cmdline(p)}`);
if (orphanZombies.length) console.log(`zombies reparented to pid 1 and not reaped by it (${cmdline(1).split(" ")[0]}): ${orphanZombies.length}`);

const problems: string[] = [];
const unexpected = NAMES.reduce((n, name) => n + (counts[name]?.unexpected ?? 0), 0);
if (unexpected) problems.push(`${unexpected} unexpected answers`);
if (errors) problems.push(`${errors} connection errors`);
if (NAMES.some((n) => !counts[n])) problems.push("a function was never answered");
if (peakRss > RSS_BOUND_KB) problems.push("RSS over its bound");
if (peakThreads > THREAD_BOUND) problems.push("threads over their bound");
if (lingeringZombies) problems.push("zombie children were not reaped");
if (exited !== 0) problems.push(`exit status ${exited}`);
if (stopSeconds > GRACE_S + 1) problems.push("shutdown took longer than the grace");
if (left.length) problems.push(`${left.length} processes left`);
for (const f of failures) console.log(`  failure: ${f}`);
for (const p of left) process.kill(p, "SIGKILL");
rmSync(dir, { recursive: true, force: true });
if (problems.length) {
  console.log(`FAILED: ${problems.join("; ")}\nserver log tail:\n${tail.slice(-(Number(process.env.SOAK_TAIL) || 30)).join("\n")}`);
  process.exit(1);
}
console.log("OK");
