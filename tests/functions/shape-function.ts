// Serve test: handler shape 1, `export default function`.
export default function (req: Request): Response {
  return new Response(`shape=function url=${new URL(req.url).pathname}\n`);
}
