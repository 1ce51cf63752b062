// The SDK against a real roar stack (broker, PostgreSQL, object store, the pitch worker).
import { test } from "node:test";
import assert from "node:assert/strict";

import { RoarClient, RoarError } from "../dist/index.js";
import { collect, env, sineWav } from "./helpers.mjs";

const baseUrl = env("ROAR_SDK_BASE_URL");
const token = env("ROAR_SDK_TOKEN");

const finished = (jobId) => (ev) => ev.job_id === jobId && ["completed", "failed", "canceled"].includes(ev.kind);

test("upload, duplicate, process pitch, watch to completion, outputs", { timeout: 240_000 }, async () => {
  const client = new RoarClient({ baseUrl, token });
  const wav = sineWav(1.0, 440, 1);
  const progress = [];
  const first = await client.upload(wav, { filename: "a4.wav", mime: "audio/wav", chunkSize: 4096, onProgress: (s, t) => progress.push([s, t]) });
  assert.equal(first.duplicate, false);
  assert.match(first.file_id, /^f[0-9a-f]{32}$/);
  assert.ok(progress.length > 1, "progress reported per chunk");
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i][0] > progress[i - 1][0]);
  assert.deepEqual(progress.at(-1), [wav.byteLength, wav.byteLength]);

  const again = await client.upload(new Blob([wav], { type: "audio/wav" }), { filename: "again.wav" });
  assert.deepEqual(again, { file_id: first.file_id, duplicate: true });

  // The probe makes the file ready; until then /process answers 409 file_not_ready.
  await collect(client.watch(first.file_id), (ev) => ev.kind === "file_probed" || ev.kind === "file_probe_failed");
  const job = await client.process({ file_id: first.file_id, model: "pitch" });
  assert.ok("job_id" in job, JSON.stringify(job));
  const events = await collect(client.watch(first.file_id), finished(job.job_id));
  assert.equal(events.at(-1).kind, "completed", JSON.stringify(events.at(-1)));

  const st = await client.status(first.file_id, { after: job.consistency_token });
  const done = st.jobs.find((j) => j.job_id === job.job_id);
  assert.equal(done.status, "completed");
  assert.ok(done.outputs.length > 0);
  for (const o of done.outputs) assert.ok(o.url, JSON.stringify(o));
  const csv = done.outputs.find((o) => o.path.endsWith(".csv")) ?? done.outputs[0];
  const res = await fetch(csv.url);
  assert.equal(res.status, 200);
  assert.ok((await res.arrayBuffer()).byteLength > 0);

  const songs = [];
  for await (const s of client.songs({ pageSize: 1 })) songs.push(s.file_id);
  assert.ok(songs.includes(first.file_id));
});

test("a stream dropped mid-job resumes with Last-Event-ID: no event lost or repeated", { timeout: 240_000 }, async () => {
  const resumedFrom = [];
  let dropped = false;
  // Cuts the first event stream once it has carried the job's first event, as a network would.
  const dropping = async (url, init) => {
    const res = await fetch(url, init);
    if (!String(url).endsWith("/events")) return res;
    const h = new Headers(init?.headers).get("last-event-id");
    if (h !== null) resumedFrom.push(Number(h));
    if (dropped) return res;
    const reader = res.body.getReader();
    let text = "";
    const body = new ReadableStream({
      async pull(c) {
        const { value, done } = await reader.read();
        if (done) return c.close();
        text += new TextDecoder().decode(value);
        c.enqueue(value);
        if (/event: (started|progress)/.test(text)) {
          dropped = true;
          reader.cancel().catch(() => {});
          c.error(new TypeError("connection reset (test)"));
        }
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
  const client = new RoarClient({ baseUrl, token, fetch: dropping });
  const { file_id } = await client.upload(sineWav(6.0, 330, 2), { filename: "long.wav" });
  await collect(client.watch(file_id), (ev) => ev.kind === "file_probed");
  const job = await client.process({ file_id, model: "pitch", params: { hop_ms: 5 } });
  const seen = await collect(client.watch(file_id, { reconnectDelayMs: 50 }), finished(job.job_id));
  assert.ok(dropped, "the stream was cut");
  assert.ok(resumedFrom.length >= 1, "the client reconnected with Last-Event-ID");

  // A fresh reader of the whole history sees exactly the same events.
  const plain = new RoarClient({ baseUrl, token });
  const all = await collect(plain.watch(file_id), finished(job.job_id));
  assert.deepEqual(seen.map((e) => e.seq), all.map((e) => e.seq));
  assert.equal(new Set(seen.map((e) => e.seq)).size, seen.length);
});

test("the token provider is asked on every request, so a refreshed token is used", { timeout: 240_000 }, async () => {
  const tokens = [token, env("ROAR_SDK_TOKEN_REFRESHED")];
  let calls = 0;
  const sent = [];
  const client = new RoarClient({
    baseUrl,
    token: async () => tokens[calls++ % 2],
    fetch: (url, init) => {
      sent.push(new Headers(init?.headers).get("authorization"));
      return fetch(url, init);
    },
  });
  for (let i = 0; i < 3; i++) await client.models();
  assert.equal(calls, 3);
  assert.deepEqual(sent, [`Bearer ${tokens[0]}`, `Bearer ${tokens[1]}`, `Bearer ${tokens[0]}`]);

  const expired = new RoarClient({ baseUrl, token: () => "not-a-jwt" });
  await assert.rejects(expired.models(), (e) => e instanceof RoarError && e.status === 401 && e.code === "unauthorized");
});

test("a bad request is a typed error carrying code and request id", { timeout: 240_000 }, async () => {
  const ids = ["sdk-test-0001"];
  const client = new RoarClient({ baseUrl, token, requestId: () => ids[0] });
  const { file_id } = await client.upload(sineWav(0.5, 220, 3), { filename: "short.wav" });
  const err = await client.process({ file_id, model: "karaoke" }).catch((e) => e);
  assert.ok(err instanceof RoarError, String(err));
  assert.ok([409, 422].includes(err.status), err.message);
  assert.equal(err.requestId, "sdk-test-0001");
  assert.ok(err.code.length > 0);
  // An unknown model is 422 whatever the file's state.
  await collect(client.watch(file_id), (ev) => ev.kind === "file_probed");
  const unknown = await client.process({ file_id, model: "karaoke" }).catch((e) => e);
  assert.equal(unknown.status, 422);
  assert.equal(unknown.code, "unprocessable");
  assert.match(unknown.message, /karaoke/);
  assert.equal(unknown.retryable, false, "a refused body fails again as it is");
});

test("presets run as one pipeline, followed and canceled through the SDK", { timeout: 240_000 }, async () => {
  const client = new RoarClient({ baseUrl, token });
  const { presets } = await client.presets();
  const karaoke = presets.find((p) => p.name === "karaoke");
  assert.ok(karaoke, JSON.stringify(presets.map((p) => p.name)));
  assert.deepEqual(karaoke.steps.map((s) => s.name), ["separate", "transcribe", "pitch", "lyrics"]);

  const { file_id } = await client.upload(sineWav(0.5, 262, 4), { filename: "karaoke.wav" });
  await collect(client.watch(file_id), (ev) => ev.kind === "file_probed");
  const asked = await client.process({ file_id, preset: "karaoke" });
  assert.ok("pipeline_id" in asked, JSON.stringify(asked));
  assert.match(asked.pipeline_id, /^p[0-9a-f]{32}$/);
  assert.deepEqual(asked.steps.map((s) => s.name), ["separate", "transcribe", "pitch", "lyrics"]);

  // This stack has no demucs worker: the first step waits, so the cancel always finds work.
  await client.status(file_id, { after: asked.consistency_token });
  const seen = await client.pipeline(asked.pipeline_id);
  assert.equal(seen.file_id, file_id);
  assert.equal(seen.preset, "karaoke");
  const cancel = await client.cancelPipeline(asked.pipeline_id);
  assert.equal(cancel.status, "cancel_requested");
  // Once the read model has the cancel, asking again is a 409 that says so.
  await client.status(file_id, { after: cancel.consistency_token });
  const again = await client.cancelPipeline(asked.pipeline_id).catch((e) => e);
  assert.ok(again instanceof RoarError, String(again));
  assert.equal(again.status, 409);
  assert.ok(["pipeline_canceled", "pipeline_finished"].includes(again.code), again.code);
  const missing = await client.pipeline(`p${"0".repeat(32)}`).catch((e) => e);
  assert.equal(missing.status, 404);
});
