// Serve test: handler shape 3, a named `handler` export and no default export.
export async function handler(req: Request): Promise<Response> {
  return new Response(`shape=named url=${new URL(req.url).pathname}\n`);
}
