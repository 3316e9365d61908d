// Starts `functions serve` for a benchmark: one function in a temp dir, a free port of
// 127.0.0.1, the given idle_timeout. Used by latency.ts and compare/startup.ts.
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Started {
  proc: ReturnType<typeof Bun.spawn>;
  /** The temp dir: the function, functions.conf and data/. */
  dir: string;
  /** http://127.0.0.1:PORT/functions/NAME */
  url: string;
  stop: () => Promise<void>;
}

/** Serves `source` as function file `file` (its stem is the name) with `binary`. */
export async function startFunctions(binary: string, bun: string, file: string, source: string, idle: string): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), "bench-"));
  writeFileSync(join(dir, file), source);
  const conf = join(dir, "functions.conf");
  writeFileSync(conf, `idle_timeout = ${idle}\nbun_path = ${bun}\n`);
  const proc = Bun.spawn([binary, "serve", "--config", conf, "--data-dir", join(dir, "data"),
    "--socket", join(dir, "s.sock"), "--http-port", "0", "--functions-dir", dir], { stderr: "pipe", stdout: "ignore" });
  const reader = proc.stderr.getReader();
  let text = "";
  let port = 0;
  while (!port) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited:\n${text}`);
    text += new TextDecoder().decode(value);
    const m = text.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (m) port = Number(m[1]);
  }
  (async () => { while (!(await reader.read()).done); })(); // keep draining the log
  const name = file.replace(/\.[^.]+$/, "");
  return {
    proc, dir, url: `http://127.0.0.1:${port}/functions/${name}`,
    stop: async () => { proc.kill("SIGTERM"); await proc.exited; rmSync(dir, { recursive: true, force: true }); },
  };
}
