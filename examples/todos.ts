// Routing on the sub-path: /functions/todos, /functions/todos/{id}, with a named
// `handler` export. State lives in the worker's memory, so it is per worker and is lost
// when the worker stops: real data belongs in a database.
type Todo = { id: number; title: string; done: boolean };

const todos: Todo[] = [
  { id: 1, title: "Deploy a function", done: true },
  { id: 2, title: "Call it with curl", done: false },
];

export async function handler(request: Request): Promise<Response> {
  const url = new URL(request.url);
  // Everything after /functions/todos, whether or not the prefix is there.
  const rest = url.pathname.replace(/^\/functions\/todos/, "").split("/").filter(Boolean);

  if (rest.length === 0 && request.method === "GET") return Response.json(todos);
  if (rest.length === 0 && request.method === "POST") {
    const { title } = (await request.json()) as { title?: string };
    if (!title) return Response.json({ error: "title is required" }, { status: 400 });
    const todo = { id: Math.max(0, ...todos.map((t) => t.id)) + 1, title, done: false };
    todos.push(todo);
    return Response.json(todo, { status: 201, headers: { location: `/functions/todos/${todo.id}` } });
  }
  const todo = todos.find((t) => t.id === Number(rest[0]));
  if (rest.length === 1 && todo && request.method === "GET") return Response.json(todo);
  if (!todo) return Response.json({ error: "no such todo" }, { status: 404 });
  return Response.json({ error: "method not allowed" }, { status: 405 });
}
