// Environment variables: greeting.env beside this file sets GREETING and SIGNATURE for
// this function only. Other functions never see them.
export default function (): Response {
  const greeting = process.env.GREETING ?? "Hello";
  const signature = process.env.SIGNATURE ?? "(no SIGNATURE set)";
  return new Response(`${greeting} from an environment variable!\n${signature}\n`);
}
