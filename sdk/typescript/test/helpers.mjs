// What the tests share: the stack the Rust harness started (tests/e2e/sdk_typescript.rs passes
// its address and tokens in the environment) and a WAV generator.

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through tests/e2e/sdk_typescript.rs`);
  return v;
}

/** A mono 16-bit WAV of a sine at `hz`; `salt` changes one sample so each call can be new content. */
export function sineWav(seconds, hz = 440, salt = 0, rate = 16000) {
  const n = Math.round(seconds * rate);
  const buf = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buf);
  const text = (o, s) => [...s].forEach((c, i) => v.setUint8(o + i, c.charCodeAt(0)));
  text(0, "RIFF");
  v.setUint32(4, 36 + 2 * n, true);
  text(8, "WAVE");
  text(12, "fmt ");
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true);
  v.setUint16(22, 1, true);
  v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  text(36, "data");
  v.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    v.setInt16(44 + 2 * i, Math.round(16000 * Math.sin((2 * Math.PI * hz * i) / rate)), true);
  }
  v.setInt16(44, salt, true);
  return new Uint8Array(buf);
}

/** Reads `watch` until `done(event)` holds, or fails after `ms`. */
export async function collect(iterable, done, ms = 120_000) {
  const seen = [];
  const deadline = Date.now() + ms;
  for await (const ev of iterable) {
    seen.push(ev);
    if (done(ev)) return seen;
    if (Date.now() > deadline) break;
  }
  throw new Error(`condition not met after ${seen.length} events: ${JSON.stringify(seen.map((e) => e.kind))}`);
}
