// An error: a handler that throws. The caller gets a 500 with a JSON error, the message
// and stack go to the server log, and the worker stays up for the next request.
export default function (request: Request): Response {
  const url = new URL(request.url);
  if (url.searchParams.get("ok") === "1") return new Response("no error this time\n");
  console.error("about to fail on purpose");
  throw new Error("something went wrong on purpose");
}
