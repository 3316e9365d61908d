// Serve test: never resolves, except on the `/ok` sub-path.
export default async function (req: Request): Promise<Response> {
  if (new URL(req.url).pathname.endsWith("/ok")) return new Response("ok\n");
  console.log("hang: waiting forever");
  return new Promise<Response>(() => {});
}
