// Serve test: awaits `?ms=N` milliseconds (default 100) without blocking the worker, and
// logs when it starts so a test knows the request is in flight.
export default async function (req: Request): Promise<Response> {
  const ms = Number(new URL(req.url).searchParams.get("ms") ?? 100);
  console.log(`slow: sleeping ${ms} ms`);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return new Response(`slept ${ms} ms\n`);
}
