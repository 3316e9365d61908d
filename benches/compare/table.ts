// Turns benches/compare.sh's raw results into the tables of docs/performance.md:
//
//   bun benches/compare/table.ts RESULTS MEMORY RUN_SECONDS ROUNDS
//
// RESULTS has one line per run: `target connections payload requests req/s p50_us
// p99_us errors`; MEMORY has `key value` lines. Each figure is the median over the
// rounds. Prints the tables and writes them into docs/performance.md between the
// `<!-- compare:begin -->` and `<!-- compare:end -->` markers.
import { readFileSync, writeFileSync } from "node:fs";
import { execSync } from "node:child_process";
import { join } from "node:path";

const [resultsPath, memoryPath, runSeconds, rounds] = process.argv.slice(2);
const ROOT = join(import.meta.dir, "../..");
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : Math.round((s[mid - 1] + s[mid]) / 2);
};

type Key = string;
const runs = new Map<Key, { rps: number[]; p50: number[]; p99: number[]; errors: number }>();
for (const line of readFileSync(resultsPath, "utf8").split("\n").filter(Boolean)) {
  const [target, conns, payload, , rps, p50, p99, errors] = line.split(/\s+/);
  const key = `${target} ${conns} ${payload}`;
  const entry = runs.get(key) ?? { rps: [], p50: [], p99: [], errors: 0 };
  entry.rps.push(Number(rps));
  entry.p50.push(Number(p50));
  entry.p99.push(Number(p99));
  entry.errors += Number(errors);
  runs.set(key, entry);
}
const memory = Object.fromEntries(
  readFileSync(memoryPath, "utf8").split("\n").filter(Boolean).map((l) => {
    const [k, v] = l.split(/\s+/);
    return [k, Number(v)];
  }),
);
const fig = (target: string, conns: number, payload: string) => {
  const e = runs.get(`${target} ${conns} ${payload}`)!;
  return { rps: median(e.rps), p50: median(e.p50), p99: median(e.p99), errors: e.errors };
};
const NAMES: Record<string, string> = {
  bun: "Bun.serve direct",
  gateway: "functions, HTTP gateway",
  socket: "functions, socket INVOKE",
  workerd: "workerd",
};
const k = (n: number) => (n >= 10000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));
const x = (n: number) => `${n.toFixed(2)}x`;

let out = "";
const say = (s = "") => (out += s + "\n");
say("| payload | connections | server | req/s | p50 µs | p99 µs | errors | req/s / Bun.serve | p50 / Bun.serve |");
say("|---|---|---|---|---|---|---|---|---|");
for (const payload of ["hello", "echo64k"]) {
  for (const conns of [1, 50]) {
    const base = fig("bun", conns, payload);
    for (const target of ["bun", "gateway", "socket", "workerd"]) {
      const f = fig(target, conns, payload);
      const label = payload === "hello" ? "JSON hello (GET)" : "64 KiB echo (POST)";
      say(`| ${label} | ${conns} | ${NAMES[target]} | ${k(f.rps)} | ${f.p50} | ${f.p99} | ${f.errors} | ${x(f.rps / base.rps)} | ${x(f.p50 / base.p50)} |`);
    }
  }
}
say();

const c1 = { gw: fig("gateway", 1, "hello"), bun: fig("bun", 1, "hello") };
const c50 = { gw: fig("gateway", 50, "hello"), bun: fig("bun", 50, "hello"), wd: fig("workerd", 50, "hello") };
const mb = (kib: number) => `${(kib / 1024).toFixed(1)} MB`;
const met = (ok: boolean) => (ok ? "met" : "**not met**");
say("| target | measured | |");
say("|---|---|---|");
say(`| warm p50 at 1 connection ≤ 1.5x Bun.serve | ${c1.gw.p50} µs vs ${c1.bun.p50} µs: ${x(c1.gw.p50 / c1.bun.p50)} | ${met(c1.gw.p50 <= 1.5 * c1.bun.p50)} |`);
say(`| throughput at 50 connections ≥ 50% of Bun.serve | ${k(c50.gw.rps)} vs ${k(c50.bun.rps)} req/s: ${(100 * c50.gw.rps / c50.bun.rps).toFixed(0)}% | ${met(c50.gw.rps >= 0.5 * c50.bun.rps)} |`);
say(`| throughput at 50 connections ≥ 2x workerd | ${k(c50.gw.rps)} vs ${k(c50.wd.rps)} req/s: ${x(c50.gw.rps / c50.wd.rps)} | ${met(c50.gw.rps >= 2 * c50.wd.rps)} |`);
say(`| p99 at 50 connections below workerd's | ${c50.gw.p99} µs vs ${c50.wd.p99} µs | ${met(c50.gw.p99 < c50.wd.p99)} |`);
say(`| cold start ≤ bare Bun start-up + 15 ms | ${memory.cold_ms} ms (p99 ${memory.cold_p99_ms}) vs \`bun -e 0\` ${memory.bare_bun_ms} ms: +${(memory.cold_ms - memory.bare_bun_ms).toFixed(1)} ms | ${met(memory.cold_ms <= memory.bare_bun_ms + 15)} |`);
say(`| control plane ≤ 20 MB RSS idle | ${mb(memory.server_idle_kib)} idle, ${mb(memory.server_load_kib)} peak under the 50-connection load | ${met(memory.server_idle_kib <= 20 * 1024)} |`);
say(`| warm idle worker ≤ bare Bun with the bundle loaded | ${mb(memory.worker_idle_kib)} vs ${mb(memory.bare_bundle_kib)} | ${met(memory.worker_idle_kib <= memory.bare_bundle_kib)} |`);

const sh = (cmd: string) => { try { return execSync(cmd, { encoding: "utf8" }).trim(); } catch { return "?"; } };
const cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").trim();
const machine = `${sh("nproc")} CPUs (${cpu}), ${sh("free -g | awk '/Mem:/ {print $2}'")} GiB, Linux ${sh("uname -r")}; ` +
  `Bun ${sh(`${ROOT}/bun/node_modules/.bin/bun --version`)}, ${sh(`${ROOT}/benches/compare/node_modules/.bin/workerd --version`)}, ` +
  `${sh("wrk -v 2>&1 | head -1 | cut -d' ' -f1-2")}`;
const section = `<!-- compare:begin -->
Measured ${new Date().toISOString().slice(0, 10)} by \`benches/compare.sh\` (${rounds} rounds of ${runSeconds} s per run, medians over the rounds) on ${machine}.

${out}<!-- compare:end -->`;
console.log(out);
const docPath = join(ROOT, "docs/performance.md");
const doc = readFileSync(docPath, "utf8");
const replaced = doc.replace(/<!-- compare:begin -->[\s\S]*<!-- compare:end -->/, section);
if (replaced === doc && !doc.includes("<!-- compare:begin -->")) {
  console.error("docs/performance.md has no compare markers; the table was not written");
} else {
  writeFileSync(docPath, replaced);
  console.log("written into docs/performance.md");
}
