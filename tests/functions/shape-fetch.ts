// Serve test: handler shape 2, `export default { fetch }` (Bun.serve / Workers style).
export default {
  prefix: "shape=fetch",
  fetch(req: Request): Response {
    // `this` must be the exported object.
    return new Response(`${this.prefix} url=${new URL(req.url).pathname}\n`);
  },
};
