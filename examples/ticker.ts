// Server-sent events: the body is a ReadableStream, and each event reaches the client
// as soon as it is enqueued (try `curl -N`). `?count=N` sets how many ticks (1-20).
export default function (request: Request): Response {
  const asked = Number(new URL(request.url).searchParams.get("count") ?? "5");
  const count = Math.min(Math.max(Math.trunc(asked) || 5, 1), 20);
  const encoder = new TextEncoder();
  let timer: ReturnType<typeof setInterval> | undefined;
  const body = new ReadableStream({
    start(controller) {
      let tick = 0;
      timer = setInterval(() => {
        tick += 1;
        controller.enqueue(encoder.encode(`event: tick\ndata: ${tick}\n\n`));
        if (tick === count) {
          clearInterval(timer);
          controller.close();
        }
      }, 500);
    },
    // Runs when the client goes away before the last tick.
    cancel() {
      clearInterval(timer);
    },
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
}
