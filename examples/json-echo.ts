// JSON in, JSON out, written as `export default { fetch }` (the Cloudflare Workers shape).
export default {
  async fetch(request: Request): Promise<Response> {
    if (request.method !== "POST") {
      return Response.json({ error: "POST a JSON body" }, { status: 405, headers: { allow: "POST" } });
    }
    let payload: unknown;
    try {
      payload = await request.json();
    } catch {
      return Response.json({ error: "the body is not valid JSON" }, { status: 400 });
    }
    return Response.json({ received: payload, at: new Date().toISOString() });
  },
};
