// The server's side of the page: its settings, and the Stability endpoint called as
// any web app calls it, with fetch and a multipart FormData body.

export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

export async function loadConfig() {
  const response = await fetch("/page/config", { headers: { accept: "application/json" } });
  if (!response.ok) {
    throw new ApiError(response.status, `the server's page settings answered HTTP ${response.status}`);
  }
  return response.json();
}

// `options`: {format: "png"|"webp", alphaMatting, onlyMask, bgcolor: "r,g,b"|null}.
// Resolves to the image the server answered (a Blob); rejects with an ApiError
// carrying the server's own message.
export async function removeBackground(endpoint, file, options, key, signal) {
  const form = new FormData();
  form.append("image", file, file.name || "image");
  form.append("output_format", options.format);
  if (options.alphaMatting) form.append("alpha_matting", "true");
  if (options.onlyMask) form.append("only_mask", "true");
  if (options.bgcolor) form.append("bgcolor", options.bgcolor);
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, accept: "image/*" },
    body: form,
    signal,
  });
  if (response.ok) return response.blob();
  throw await errorOf(response);
}

// Stability's error body is {"id", "name", "errors": [...]}: show its messages as sent.
async function errorOf(response) {
  let message = `the server answered HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (Array.isArray(body.errors) && body.errors.length) message = body.errors.join("; ");
  } catch {
    // Not JSON (a proxy's error page, say): the status line is all there is.
  }
  return new ApiError(response.status, message, response.headers.get("retry-after"));
}

// "#rrggbb" from <input type=color> as the form field's "r,g,b".
export function rgbOf(hex) {
  const value = parseInt(hex.slice(1), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255].join(",");
}
