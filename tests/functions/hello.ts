// Serve test: the smallest function, a default-exported function.
export default function (_req: Request): Response {
  return new Response("hello world\n", { headers: { "content-type": "text/plain" } });
}
