// Serves a Lambda handler as a tidings HTTP integration: each POST carries one
// API Gateway event; the answer is the handler's result ({statusCode, body}) as
// JSON. A handler that throws is an integration failure (HTTP 500), as a failed
// Lambda invocation is on API Gateway.
//
//   PORT=3000 node serve.mjs      (PORT=0 or unset: any free port)
//
// Prints {"listening": PORT} once it accepts requests.
import http from "node:http";
import { handler } from "./handler.mjs";

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  let result;
  try {
    result = await handler(JSON.parse(Buffer.concat(chunks).toString("utf8")));
  } catch (error) {
    console.error("handler failed:", error);
    res.writeHead(500, { "content-type": "text/plain" });
    res.end("handler failed\n");
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(result ?? null));
});

server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: server.address().port }));
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
