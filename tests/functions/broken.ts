// Serve test: a syntax error, so its deploy must fail while the others deploy.
export default function (_req: Request): Response {
  return new Response("never built";
}
