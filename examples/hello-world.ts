// The smallest function: a default-exported handler that takes a Web Request and
// returns a Web Response, exactly as Bun.serve's fetch would.
export default function (request: Request): Response {
  const name = new URL(request.url).searchParams.get("name") ?? "world";
  return new Response(`Hello, ${name}!\n`);
}
