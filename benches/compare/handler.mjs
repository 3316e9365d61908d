// The handler every target of benches/compare.sh serves: GET answers a small JSON
// document, POST echoes the request body (the 64 KiB binary echo).
export default {
  async fetch(request) {
    if (request.method === "POST") {
      return new Response(await request.arrayBuffer(), {
        headers: { "content-type": "application/octet-stream" },
      });
    }
    return new Response('{"message":"Hello, world"}', {
      headers: { "content-type": "application/json" },
    });
  },
};
