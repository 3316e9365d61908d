// Serve test: throws, except on the `/ok` sub-path.
export default function (req: Request): Response {
  if (new URL(req.url).pathname.endsWith("/ok")) return new Response("ok\n");
  throw new Error("deliberate failure from throws.ts");
}
