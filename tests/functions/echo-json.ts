// Serve test: reads a JSON body and sends it back with the method it came with.
export default async function (req: Request): Promise<Response> {
  const received = await req.json();
  return Response.json({ method: req.method, received });
}
