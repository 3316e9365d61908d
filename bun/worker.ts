/**
 * Function worker: the Bun side of the worker protocol.
 *
 * The Rust server spawns one long-lived child per worker:
 *
 *     bun <data_dir>/runtime/worker.ts <absolute path of bundle.js>
 *
 * This file owns everything that happens inside that child: loading the
 * user's bundle, resolving its handler, turning protocol messages into
 * `Request`s and `Response`s, and keeping user output (console, stdout writes,
 * uncaught errors) from corrupting the protocol stream.
 *
 * Protocol: NDJSON, one JSON object per line. The parent writes to our stdin,
 * we write to stdout; the parent drains stderr and logs it.
 *
 *   parent -> child
 *     {"type":"invoke","id":string,"method":string,"url":string,
 *      "headers":[[name,value],...],"body":base64|"","deadline":epoch_ms,
 *      "max_response":bytes}
 *     {"type":"ack","id":string,"chunks":number}   that many chunks of a streamed
 *                                                  body were delivered
 *     {"type":"cancel","id":string}   stop a streamed body: cancel its stream, send end
 *     {"type":"shutdown"}   finish in-flight invocations, then exit 0
 *     (EOF on stdin means the same as shutdown)
 *
 *   child -> parent
 *     {"type":"ready","pid":number}                        once, after the handler is resolved
 *     {"type":"response","id":string,"status":number,"status_text":string,
 *      "headers":[[name,value],...],"body":base64}
 *     {"type":"log","id":string|null,"level":"log"|"info"|"warn"|"error"|"debug"|"trace"|"stdout"|"stderr",
 *      "message":string}                                   message capped at 64 KiB (UTF-8)
 *     {"type":"error","id":string|null,"name":string,"message":string,"stack":string}
 *     {"type":"too_large","id":string}   the body passed max_response; not sent
 *   A body that is not whole in memory (a ReadableStream, an async iterable, a
 *   fetch() response) is streamed instead of sent in one "response":
 *     {"type":"head","id":string,"status":number,"status_text":string,"headers":[...]}
 *     {"type":"chunk","id":string,"data":base64}      at most CHUNK_MAX bytes each;
 *                                                     at most WINDOW not yet acked
 *     {"type":"end","id":string,"error"?:string}      the last message of the stream
 *   and a stream that passes max_response ends with "too_large" instead of "end".
 *   A whole body over WHOLE_MAX (1 MiB) is sent the same way, in chunks.
 *
 * Every child -> parent message is written as "\n" + JSON + "\n" so stray bytes
 * that reach fd 1 without going through us (native code, Bun.write(Bun.stdout))
 * can never glue onto a protocol line; the parent skips empty lines and treats
 * other non-protocol lines as function output.
 *
 * Messages are written synchronously (blocking), so nothing is lost when the
 * function calls process.exit() right after logging. Several invocations may
 * be in flight at once; log lines are attributed to their invocation through
 * AsyncLocalStorage. User output is redirected: console.* and
 * process.stdout.write become `log` messages, uncaught exceptions and
 * unhandled rejections are logged instead of killing the worker, and
 * process.stderr.write becomes a `log` message of level "stderr".
 *
 * deadline is enforced by the parent (it kills the worker), so it is ignored here.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import fs from "node:fs";
import nodePath from "node:path";

type Handler = (request: Request) => unknown;
type HeaderPair = [string, string];

interface InvokeMessage {
  type: "invoke";
  id: string;
  method: string;
  url: string;
  headers: HeaderPair[];
  body: string;
  deadline?: number;
  max_response?: number;
}

interface ErrorFields {
  name: string;
  message: string;
  stack: string;
}

const MAX_LOG_BYTES = 64 * 1024;
const TEXT_PLAIN = "text/plain;charset=utf-8";
const OCTET_STREAM = "application/octet-stream";
const ACCEPTED_SHAPES =
  "`export default function (req) {...}`, `export default { fetch(req) {...} }` " +
  "or `export function handler(req) {...}`";

// Captured before user code runs, so user overrides cannot affect the worker.
const exitProcess: (code: number) => never = process.exit.bind(process);
const OriginalResponse = globalThis.Response;
const WORKER_PATH = import.meta.path;
const currentInvocation = new AsyncLocalStorage<string>();

// ---------------------------------------------------------------------------
// Writing protocol messages
// ---------------------------------------------------------------------------

const outFd = openProtocolOutput();
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/**
 * Returns a blocking file descriptor for our stdout.
 *
 * fd 1 itself may be switched to O_NONBLOCK behind our back (Bun does that
 * when its process.stdout stream or Bun.stdout is used), and then a big write
 * comes back short or fails with EAGAIN. On Linux, opening /proc/self/fd/1 of
 * a pipe yields a separate open file description of the same pipe whose
 * blocking mode nobody else touches, so a big message is one plain blocking
 * write. Everywhere else (other OSes, sockets) we write to fd 1 and cope with
 * partial writes and EAGAIN in `writeBytes`.
 */
function openProtocolOutput(): number {
  try {
    if (process.platform === "linux" && fs.fstatSync(1).isFIFO()) {
      return fs.openSync("/proc/self/fd/1", fs.constants.O_WRONLY);
    }
  } catch {
    // fall back to fd 1
  }
  return 1;
}

/** Writes one protocol message as "\n" + JSON + "\n". */
function send(message: object): void {
  writeText("\n" + JSON.stringify(message) + "\n");
}

function writeText(text: string): void {
  let written = 0;
  try {
    written = fs.writeSync(outFd, text);
  } catch (err) {
    onWriteError(err);
  }
  // Common case: ASCII text written in one go, then byteLength === length.
  if (written === text.length && written === Buffer.byteLength(text)) return;
  const bytes = Buffer.from(text, "utf8");
  if (written < bytes.length) writeBytes(bytes, written);
}

function writeBytes(bytes: Uint8Array, offset: number): void {
  while (offset < bytes.length) {
    try {
      offset += fs.writeSync(outFd, bytes, offset, bytes.length - offset);
    } catch (err) {
      onWriteError(err);
    }
  }
}

/** EAGAIN (non-blocking fd, pipe full): wait 1 ms and let the caller retry. Anything else is fatal. */
function onWriteError(err: unknown): void {
  const code = (err as { code?: string } | null)?.code;
  if (code === "EAGAIN" || code === "EWOULDBLOCK" || code === "EINTR") {
    Atomics.wait(sleepCell, 0, 0, 1);
    return;
  }
  // EPIPE and friends: the parent is gone, nobody can hear us any more.
  exitProcess(1);
}

// ---------------------------------------------------------------------------
// Log and error messages
// ---------------------------------------------------------------------------

const truncateScratch = Buffer.allocUnsafe(MAX_LOG_BYTES);

/** Keeps the first 64 KiB (UTF-8) of a message and says how much was dropped. */
function truncateLog(message: string): string {
  // A lone surrogate (half an emoji, say) is not valid JSON text for the parent.
  if (!message.isWellFormed()) message = message.toWellFormed();
  // Each UTF-16 unit is at most 3 UTF-8 bytes.
  if (message.length * 3 <= MAX_LOG_BYTES) return message;
  const total = Buffer.byteLength(message);
  if (total <= MAX_LOG_BYTES) return message;
  // A prefix of MAX_LOG_BYTES units is at least MAX_LOG_BYTES bytes long.
  let prefix = message.slice(0, MAX_LOG_BYTES);
  const last = prefix.charCodeAt(prefix.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) prefix = prefix.slice(0, -1);
  // Buffer#write stops before a character that would not fit whole.
  const kept = truncateScratch.write(prefix, 0, MAX_LOG_BYTES, "utf8");
  return (
    truncateScratch.toString("utf8", 0, kept) + ` …[truncated ${total - kept} bytes]`
  );
}

function sendLog(id: string | null, level: string, message: string): void {
  send({ type: "log", id, level, message: truncateLog(message) });
}

/** A log line from user code, attributed to the invocation it runs in. */
function userLog(level: string, message: string): void {
  sendLog(currentInvocation.getStore() ?? null, level, message);
}

function sendError(id: string | null, value: unknown): void {
  const { name, message, stack } = errorFields(value);
  send({
    type: "error",
    id,
    name: truncateLog(name),
    message: truncateLog(message),
    stack: truncateLog(stack),
  });
}

/** name/message/stack of anything thrown; non-Errors become an "Error". */
function errorFields(value: unknown): ErrorFields {
  if (value !== null && typeof value === "object") {
    const err = value as { name?: unknown; message?: unknown; stack?: unknown };
    if (value instanceof Error || typeof err.message === "string") {
      return {
        name: typeof err.name === "string" && err.name !== "" ? err.name : "Error",
        message: typeof err.message === "string" ? err.message : safeString(err.message),
        stack: typeof err.stack === "string" ? userStack(err.stack) : "",
      };
    }
  }
  return { name: "Error", message: safeString(value), stack: "" };
}

/** Drops the worker's own frames (and AsyncLocalStorage's) from a stack trace. */
function userStack(stack: string): string {
  if (!stack.includes(WORKER_PATH) && !stack.includes("node:async_hooks")) return stack;
  return stack
    .split("\n")
    .filter((line) => !isInternalFrame(line))
    .join("\n");
}

function isInternalFrame(line: string): boolean {
  return (
    line.trimStart().startsWith("at ") &&
    (line.includes(WORKER_PATH) || line.includes("node:async_hooks"))
  );
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Bun.inspect(value);
  }
}

function describeForLog(value: unknown): string {
  if (value instanceof Error && typeof value.stack === "string") return userStack(value.stack);
  return typeof value === "string" ? value : Bun.inspect(value);
}

function installProcessErrorHandlers(): void {
  process.on("uncaughtException", (err: unknown) => {
    userLog("error", "Uncaught exception: " + describeForLog(err));
  });
  process.on("unhandledRejection", (reason: unknown) => {
    userLog("error", "Unhandled promise rejection: " + describeForLog(reason));
  });
}

// ---------------------------------------------------------------------------
// Console and stdout redirection
// ---------------------------------------------------------------------------

/** Formats console arguments the way Bun's console does. */
function formatArgs(args: unknown[]): string {
  const count = args.length;
  if (count === 0) return "";
  const first = args[0];
  if (count === 1) return typeof first === "string" ? first : Bun.inspect(first);
  let out: string;
  let next = 1;
  if (typeof first === "string" && first.includes("%")) {
    formatState.used = 1;
    out = applyFormat(first, args);
    next = formatState.used;
  } else {
    out = typeof first === "string" ? first : Bun.inspect(first);
  }
  for (let i = next; i < count; i++) {
    const arg = args[i];
    out += " " + (typeof arg === "string" ? arg : Bun.inspect(arg));
  }
  return out;
}

const formatState = { used: 1 };

/** Expands %s %d %i %f %o %O %j %c %% in `format`, consuming args from index 1. */
function applyFormat(format: string, args: unknown[]): string {
  let out = "";
  let last = 0;
  let used = 1;
  for (let i = format.indexOf("%"); i !== -1 && i + 1 < format.length; i = format.indexOf("%", i)) {
    const spec = format[i + 1];
    if (spec === "%") {
      out += format.slice(last, i) + "%";
      last = i += 2;
      continue;
    }
    if (used >= args.length || !"sdifoOjc".includes(spec)) {
      i += 1;
      continue;
    }
    out += format.slice(last, i) + formatOne(spec, args[used++]);
    last = i += 2;
  }
  formatState.used = used;
  return out + format.slice(last);
}

function formatOne(spec: string, arg: unknown): string {
  switch (spec) {
    case "s":
      return typeof arg === "string" ? arg : safeString(arg);
    case "d":
    case "i":
      if (typeof arg === "bigint") return `${arg}n`;
      return typeof arg === "symbol" ? "NaN" : String(Math.trunc(Number(arg)));
    case "f":
      return typeof arg === "symbol" ? "NaN" : String(Number(arg));
    case "j":
      try {
        return JSON.stringify(arg) ?? "undefined";
      } catch {
        return "[Circular]";
      }
    case "c":
      return "";
    default: // o, O
      return Bun.inspect(arg);
  }
}

function chunkToString(chunk: unknown, encoding?: unknown): string {
  if (typeof chunk === "string") {
    if (typeof encoding === "string" && encoding !== "utf8" && encoding !== "utf-8") {
      return Buffer.from(chunk, encoding as BufferEncoding).toString("utf8");
    }
    return chunk;
  }
  if (ArrayBuffer.isView(chunk)) {
    return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("utf8");
  }
  if (chunk instanceof ArrayBuffer) return Buffer.from(chunk).toString("utf8");
  return safeString(chunk);
}

function installConsole(): void {
  const c = console as any;
  const counts = new Map<string, number>();
  const timers = new Map<string, number>();
  let indent = "";
  const emit = (level: string, message: string) =>
    userLog(level, indent === "" ? message : indent + message.replaceAll("\n", "\n" + indent));

  c.log = (...args: unknown[]) => emit("log", formatArgs(args));
  c.info = (...args: unknown[]) => emit("info", formatArgs(args));
  c.warn = (...args: unknown[]) => emit("warn", formatArgs(args));
  c.error = (...args: unknown[]) => emit("error", formatArgs(args));
  c.debug = (...args: unknown[]) => emit("debug", formatArgs(args));
  c.dirxml = c.log;
  c.trace = (...args: unknown[]) => {
    // Drop "Error" and the frame of this function.
    const frames = userStack((new Error().stack ?? "").split("\n").slice(2).join("\n"));
    emit("trace", (args.length > 0 ? formatArgs(args) : "Trace") + "\n" + frames);
  };
  c.dir = (value: unknown, options?: object) => emit("log", Bun.inspect(value, options as any));
  c.table = (data: unknown, properties?: string[]) => {
    if (data === null || typeof data !== "object") return emit("log", formatArgs([data]));
    emit("log", Bun.inspect.table(data, properties).replace(/\n$/, ""));
  };
  c.assert = (condition: unknown, ...args: unknown[]) => {
    if (!condition) emit("error", args.length > 0 ? formatArgs(args) : "Assertion failed");
  };
  c.count = (label = "default") => {
    const n = (counts.get(label) ?? 0) + 1;
    counts.set(label, n);
    emit("log", `${label}: ${n}`);
  };
  c.countReset = (label = "default") => void counts.delete(label);
  c.time = (label = "default") => void timers.set(label, performance.now());
  const elapsed = (label: string, end: boolean, extra: unknown[]) => {
    const start = timers.get(label);
    if (start === undefined) return emit("warn", `No such label '${label}' for console.time${end ? "End" : "Log"}()`);
    if (end) timers.delete(label);
    const ms = `[${(performance.now() - start).toFixed(2)}ms] ${label}`;
    emit("log", extra.length > 0 ? ms + " " + formatArgs(extra) : ms);
  };
  c.timeLog = (label = "default", ...extra: unknown[]) => elapsed(label, false, extra);
  c.timeEnd = (label = "default") => elapsed(label, true, []);
  c.group = c.groupCollapsed = (...args: unknown[]) => {
    if (args.length > 0) emit("log", formatArgs(args));
    indent += "  ";
  };
  c.groupEnd = () => void (indent = indent.slice(2));
  // Bun-specific: console.write(...data) writes raw to stdout.
  c.write = (...data: unknown[]) => {
    let text = "";
    for (const d of data) text += chunkToString(d);
    userLog("stdout", text);
    return text.length;
  };
}

type Stream = "stdout" | "stderr";

/** process.stdout/stderr.write(chunk, [encoding], [callback]) -> `log` of that level. */
function streamWriter(level: Stream) {
  return function write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    if (typeof encoding === "function") {
      callback = encoding;
      encoding = undefined;
    }
    userLog(level, chunkToString(chunk, encoding));
    if (typeof callback === "function") queueMicrotask(callback as () => void);
    return true;
  };
}

/**
 * Redirects process.stdout and process.stderr into `log` messages of level
 * "stdout" / "stderr", attributed to the current invocation (raw writes to
 * fd 2 by native code still reach the stderr pipe, without an invocation id).
 *
 * Bun builds these streams lazily, and building process.stdout costs ~8 ms
 * (about 40% of start-to-ready) and switches fd 1 to non-blocking mode. So
 * Bun's streams are never built: each becomes a lazy accessor whose first
 * access builds a small Writable (not a TTY) whose writes become `log` lines.
 * Functions that never touch them never pay for node:stream.
 */
function installStream(level: Stream, fd: number): void {
  let stream: unknown;
  // A plain assignment first: Bun would build its stream just to redefine
  // the property (defineProperty and delete both materialise it; `=` does not).
  (process as any)[level] = undefined;
  Object.defineProperty(process, level, {
    configurable: true,
    enumerable: true,
    get: () => (stream ??= createStream(level, fd)),
    set: (value: unknown) => void (stream = value),
  });
}

function createStream(level: Stream, fd: number): unknown {
  const { Writable } = require("node:stream") as typeof import("node:stream");
  const write = streamWriter(level);
  const stream = new Writable({
    decodeStrings: false,
    write(chunk, encoding, callback) {
      userLog(level, chunkToString(chunk, encoding));
      callback();
    },
  }) as any;
  // Direct writes skip the stream machinery (and never report backpressure).
  stream.write = write;
  stream.fd = fd;
  stream.isTTY = false;
  return stream;
}

// ---------------------------------------------------------------------------
// Response content-type defaults (what Bun.serve would add)
// ---------------------------------------------------------------------------

/**
 * `new Response("text")` has no content-type in its Headers, but Bun.serve
 * sends text/plain;charset=utf-8 (octet-stream for bytes, the Blob's type for
 * a typed Blob). To behave like Bun.serve, the global Response constructor is
 * wrapped in a Proxy that remembers the content-type each new Response's body
 * implies. A Proxy keeps `instanceof`, statics and subclassing intact.
 */
const impliedContentType = new WeakMap<object, string>();

/**
 * Responses whose body is already whole in memory (a string, bytes, a Blob, form
 * data, JSON, none): `bytes()` costs nothing extra and their size is checked after.
 * Any other body (a ReadableStream, an async iterable, a fetch() response) is read
 * chunk by chunk and given up once it passes max_response.
 */
const wholeBody = new WeakSet<object>();
const bytesOf = new WeakMap<object, Uint8Array>();

function isWholeBody(body: unknown): boolean {
  if (body === undefined || body === null || typeof body === "string") return true;
  return (
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    body instanceof Blob ||
    body instanceof URLSearchParams ||
    body instanceof FormData
  );
}

function contentTypeForBody(body: unknown): string | undefined {
  if (typeof body === "string") return TEXT_PLAIN;
  if (body === null || typeof body !== "object") return undefined;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return OCTET_STREAM;
  if (body instanceof Blob && body.type !== "") return body.type;
  return undefined;
}

function installResponseProxy(): void {
  (globalThis as any).Response = new Proxy(OriginalResponse, {
    construct(target, args, newTarget) {
      const response = Reflect.construct(target, args, newTarget);
      const type = contentTypeForBody(args[0]);
      if (type !== undefined) impliedContentType.set(response, type);
      if (isWholeBody(args[0])) wholeBody.add(response);
      // Bytes the function passed: sent as they are, without a copy through bytes().
      if (args[0] instanceof Uint8Array) bytesOf.set(response, args[0]);
      else if (args[0] instanceof ArrayBuffer) bytesOf.set(response, new Uint8Array(args[0]));
      return response;
    },
  });
  for (const name of ["json", "redirect", "error"] as const) {
    const make = (OriginalResponse as any)[name];
    if (typeof make !== "function") continue;
    (OriginalResponse as any)[name] = function (this: unknown, ...args: unknown[]): Response {
      const response = make.apply(this, args);
      wholeBody.add(response);
      return response;
    };
  }
  const proto = OriginalResponse.prototype;
  const clone = proto.clone;
  proto.clone = function (this: Response): Response {
    const copy = clone.call(this);
    const type = impliedContentType.get(this);
    if (type !== undefined) impliedContentType.set(copy, type);
    if (wholeBody.has(this)) wholeBody.add(copy);
    return copy;
  };
}

// ---------------------------------------------------------------------------
// Base64
// ---------------------------------------------------------------------------

const nativeFromBase64: ((s: string) => Uint8Array) | undefined = (Uint8Array as any).fromBase64;
const nativeToBase64 = typeof (Uint8Array.prototype as any).toBase64 === "function";

function decodeBase64(text: string): Uint8Array {
  return nativeFromBase64 !== undefined
    ? nativeFromBase64(text)
    : Buffer.from(text, "base64");
}

function encodeBase64(bytes: Uint8Array): string {
  if (bytes.length === 0) return "";
  return nativeToBase64
    ? (bytes as any).toBase64()
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

// ---------------------------------------------------------------------------
// Invocations
// ---------------------------------------------------------------------------

let handler: Handler;
let inFlight = 0;
let shuttingDown = false;

function buildRequest(msg: InvokeMessage): Request {
  const headers = new Headers();
  const pairs = msg.headers;
  if (pairs) {
    for (let i = 0; i < pairs.length; i++) headers.append(pairs[i][0], pairs[i][1]);
  }
  const method = msg.method || "GET";
  const hasBody = method !== "GET" && method !== "HEAD" && typeof msg.body === "string" && msg.body !== "";
  const request = new Request(msg.url, {
    method,
    headers,
    body: hasBody ? decodeBase64(msg.body) : undefined,
  });
  // Bun turns methods it does not know (FOO) into GET; the handler must see the method
  // as sent, so an own property shadows the getter. Known methods keep Fetch's
  // normalisation (get -> GET), as under Bun.serve.
  if (request.method !== method && request.method !== method.toUpperCase()) {
    Object.defineProperty(request, "method", { value: method, enumerable: true });
  }
  return request;
}

/** Response headers as ordered pairs, one pair per Set-Cookie, plus Bun.serve's implied content-type. */
function responseHeaders(response: Response): HeaderPair[] {
  const pairs: HeaderPair[] = [];
  const headers = response.headers;
  let hasContentType = false;
  let cookiesDone = false;
  for (const entry of headers as unknown as Iterable<HeaderPair>) {
    const name = entry[0];
    if (name === "set-cookie") {
      if (!cookiesDone) {
        cookiesDone = true;
        for (const cookie of headers.getSetCookie()) pairs.push(["set-cookie", cookie]);
      }
      continue;
    }
    if (name === "content-type") hasContentType = true;
    pairs.push(entry);
  }
  if (!hasContentType) {
    const type = impliedContentType.get(response);
    if (type !== undefined) pairs.push(["content-type", type]);
  }
  return pairs;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value === "undefined" ? "undefined" : typeof value;
  return value.constructor?.name ? `an instance of ${value.constructor.name}` : "object";
}

async function runInvocation(id: string, msg: InvokeMessage): Promise<void> {
  try {
    let result = handler(buildRequest(msg));
    if (!(result instanceof OriginalResponse) && isThenable(result)) result = await result;
    if (!(result instanceof OriginalResponse)) {
      const err = new TypeError(`handler must return a Response, got ${describeType(result)}`);
      err.stack = "";
      sendError(id, err);
      return;
    }
    const response = result;
    const headers = responseHeaders(response);
    if (!wholeBody.has(response) && response.body !== null) {
      await streamBody(id, response, headers, msg.max_response);
      return;
    }
    const body = await readBody(response, msg.max_response);
    if (body === null) {
      send({ type: "too_large", id });
      return;
    }
    if (body.byteLength > WHOLE_MAX) {
      await streamBody(id, response, headers, msg.max_response, body);
      // Its base64 pieces are garbage now; a large body leaves enough of it to push the
      // worker over memory_limit before the collector would run on its own.
      if (body.byteLength > GC_AFTER) Bun.gc(true);
      return;
    }
    send({
      type: "response",
      id,
      status: response.status,
      status_text: response.statusText.toWellFormed(),
      headers,
      body: encodeBase64(body),
    });
  } catch (err) {
    sendError(id, err);
  }
}

const textEncoder = new TextEncoder();

/** Chunks of a streamed body sent and not yet acknowledged, at most. */
const WINDOW = 8;
/** Bytes of body per chunk message, at most. */
const CHUNK_MAX = 256 << 10;
/**
 * A whole body larger than this is sent as a stream too, so neither this process nor
 * the server ever holds it base64-encoded in one message.
 */
const WHOLE_MAX = 1 << 20;
/** After sending a whole body larger than this, collect garbage at once. */
const GC_AFTER = 16 << 20;

/** A streamed body in progress: its credit (chunks it may still send) and reader. */
interface Streaming {
  credit: number;
  cancelled: boolean;
  wake: (() => void) | null;
  /** The body's reader; null for a whole body sent in chunks. */
  reader: ReadableStreamDefaultReader<unknown> | null;
}

const streaming = new Map<string, Streaming>();

/**
 * Sends the head, then the body chunk by chunk as the stream yields it, waiting for
 * credit (acks) whenever WINDOW chunks are unacknowledged, so a slow client slows the
 * stream instead of filling memory. Ends with "end" (with `error` when the stream
 * failed, logged too) or, past `limit` bytes, "too_large"; a "cancel" from the parent
 * cancels the stream (its cancel() runs) and ends it.
 */
async function streamBody(
  id: string,
  response: Response,
  headers: HeaderPair[],
  limit: number | undefined,
  whole?: Uint8Array,
): Promise<void> {
  send({
    type: "head",
    id,
    status: response.status,
    status_text: response.statusText.toWellFormed(),
    headers,
  });
  const reader = whole === undefined ? response.body!.getReader() : null;
  const state: Streaming = { credit: WINDOW, cancelled: false, wake: null, reader };
  streaming.set(id, state);
  let total = 0;
  let rest = whole;
  try {
    for (;;) {
      let bytes: Uint8Array;
      if (reader === null) {
        if (rest === undefined || state.cancelled) break;
        bytes = rest;
        rest = undefined;
      } else {
        const { done, value } = await reader.read();
        if (done || state.cancelled) break;
        bytes = asBytes(value);
      }
      total += bytes.byteLength;
      if (typeof limit === "number" && total > limit) {
        reader?.cancel(new RangeError("response body over max_response_size")).catch(() => {});
        send({ type: "too_large", id });
        return;
      }
      for (let at = 0; at < bytes.byteLength && !state.cancelled; at += CHUNK_MAX) {
        while (state.credit === 0 && !state.cancelled) {
          await new Promise<void>((resolve) => (state.wake = resolve));
        }
        if (state.cancelled) break;
        state.credit--;
        send({ type: "chunk", id, data: encodeBase64(bytes.subarray(at, at + CHUNK_MAX)) });
      }
    }
    send({ type: "end", id });
  } catch (err) {
    const { name, message } = errorFields(err);
    sendLog(id, "error", `response stream failed: ${name}: ${message}`);
    send({ type: "end", id, error: truncateLog(`${name}: ${message}`) });
  } finally {
    streaming.delete(id);
  }
}

function onAck(msg: any): void {
  const state = streaming.get(msg?.id);
  if (state === undefined || typeof msg.chunks !== "number") return;
  state.credit += msg.chunks;
  state.wake?.();
  state.wake = null;
}

function onCancel(msg: any): void {
  const state = streaming.get(msg?.id);
  if (state === undefined) return;
  state.cancelled = true;
  state.reader?.cancel(new Error("the client went away")).catch(() => {});
  state.wake?.();
  state.wake = null;
}

/** The response's body, or null once it passes `limit` bytes (the stream is cancelled). */
async function readBody(response: Response, limit: number | undefined): Promise<Uint8Array | null> {
  if (typeof limit !== "number" || wholeBody.has(response) || response.body === null) {
    const body = bytesOf.get(response) ?? (await response.bytes());
    return typeof limit === "number" && body.byteLength > limit ? null : body;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const chunk = asBytes(value);
    total += chunk.byteLength;
    if (total > limit) {
      reader.cancel(new RangeError("response body over max_response_size")).catch(() => {});
      return null;
    }
    chunks.push(chunk);
  }
  if (chunks.length === 1) return chunks[0];
  const body = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}

/** A stream chunk as bytes: streams may carry strings, ArrayBuffers or views. */
function asBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return textEncoder.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`a response body stream yielded ${describeType(value)}, not bytes or a string`);
}

function startInvocation(msg: InvokeMessage): void {
  const id = msg.id;
  if (typeof id !== "string") {
    sendLog(null, "error", "bad protocol line received: invoke message without a string id");
    return;
  }
  inFlight++;
  currentInvocation.run(id, runInvocation, id, msg).then(finishInvocation, finishInvocation);
}

function finishInvocation(): void {
  inFlight--;
  if (shuttingDown && inFlight === 0) exitProcess(0);
}

function beginShutdown(): void {
  shuttingDown = true;
  if (inFlight === 0) exitProcess(0);
}

// ---------------------------------------------------------------------------
// Reading stdin
// ---------------------------------------------------------------------------

const lineDecoder = new TextDecoder();

function handleLine(bytes: Uint8Array): void {
  if (bytes.length === 0) return;
  const text = lineDecoder.decode(bytes);
  let msg: any;
  try {
    msg = JSON.parse(text);
  } catch (err) {
    if (text.trim() !== "") reportBadLine(text, (err as Error).message);
    return;
  }
  switch (msg?.type) {
    case "invoke":
      // Shutting down: no new invocations, but acks and cancels of running streams.
      if (!shuttingDown) startInvocation(msg);
      break;
    case "ack":
      onAck(msg);
      break;
    case "cancel":
      onCancel(msg);
      break;
    case "shutdown":
      beginShutdown();
      break;
    default:
      reportBadLine(text, "unknown message type");
  }
}

function reportBadLine(text: string, reason: string): void {
  const shown = text.length > 200 ? text.slice(0, 200) + "…" : text;
  sendLog(null, "error", `bad protocol line received (${reason}): ${shown}`);
}

/** Reads stdin as bytes and hands complete lines to handleLine; EOF means shutdown. */
async function readProtocol(): Promise<void> {
  const reader = Bun.stdin.stream().getReader();
  let pending: Uint8Array[] = [];
  let pendingLength = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const chunk = value as Uint8Array;
    let start = 0;
    let newline = chunk.indexOf(10);
    while (newline !== -1) {
      if (pending.length === 0) {
        handleLine(chunk.subarray(start, newline));
      } else {
        pending.push(chunk.subarray(start, newline));
        handleLine(Buffer.concat(pending, pendingLength + newline - start));
        pending = [];
        pendingLength = 0;
      }
      start = newline + 1;
      newline = chunk.indexOf(10, start);
    }
    if (start < chunk.length) {
      pending.push(start === 0 ? chunk : chunk.subarray(start));
      pendingLength += chunk.length - start;
    }
  }
  if (pending.length > 0) handleLine(Buffer.concat(pending, pendingLength));
  beginShutdown();
}

// ---------------------------------------------------------------------------
// Startup
// ---------------------------------------------------------------------------

function resolveHandler(mod: Record<string, unknown>): Handler | undefined {
  const def = mod.default as any;
  if (typeof def === "function") return def;
  if (def !== null && typeof def === "object" && typeof def.fetch === "function") {
    const fetch = def.fetch;
    return (request) => fetch.call(def, request);
  }
  if (typeof mod.handler === "function") return mod.handler as Handler;
  return undefined;
}

function describeExports(mod: Record<string, unknown>): string {
  const names = Object.keys(mod);
  if (names.length === 0) return "none";
  return names
    .map((name) => {
      const value = mod[name];
      if (name === "default" && value !== null && typeof value === "object") {
        return "default (object without a fetch method)";
      }
      return `${name} (${value === null ? "null" : typeof value})`;
    })
    .join(", ");
}

function fail(name: string, message: string): never {
  send({ type: "error", id: null, name, message, stack: "" });
  return exitProcess(1);
}

async function main(): Promise<void> {
  const bundleArg = process.argv[2];
  if (!bundleArg) fail("UsageError", "usage: bun worker.ts <absolute path of bundle.js>");
  const bundlePath = nodePath.resolve(bundleArg);

  installResponseProxy();
  installConsole();
  installStream("stdout", 1);
  installStream("stderr", 2);
  installProcessErrorHandlers();

  let mod: Record<string, unknown>;
  try {
    mod = await import(bundlePath);
  } catch (err) {
    sendError(null, err);
    return exitProcess(1);
  }

  const resolved = resolveHandler(mod);
  if (resolved === undefined) {
    fail(
      "NoHandler",
      `no handler found in ${bundlePath}: expected ${ACCEPTED_SHAPES}; ` +
        `the module exports: ${describeExports(mod)}`,
    );
  }
  handler = resolved;

  send({ type: "ready", pid: process.pid });
  await readProtocol();
}

main().catch((err) => {
  sendError(null, err);
  exitProcess(1);
});
