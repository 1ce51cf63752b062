// The studio's refused and interrupted paths in headless Chromium, against the stack that
// tests/e2e/e2e_studio.rs started for them: no model workers (every job stays queued until it
// is canceled), uploads capped at 1 MiB, a per-user rate limit of 100 requests then 10 a
// second. A file over the cap is a 413 message; a generation over musicgen's duration limit
// is a 422 message, a good one a new song whose queued job is canceled; a job is canceled,
// then retried as its next attempt (shown as such while still queued); the "karaoke" preset
// is one pipeline of four steps, canceled as a whole; a burst of requests meets the 429
// message; a refused token shows the sign-in form, never a blank page.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { sineWav } from "../../test/helpers.mjs";
import { base, jobRow, launch, pipelineRow, token } from "./page.mjs";

let session;
let page;
const shot = (name) => session.shot(name);

before(async () => {
  session = await launch("paths");
  page = session.page;
});

after(async () => {
  await session?.browser.close();
});

test("too large, cancel, retry, a pipeline canceled, too many requests", { timeout: 240_000 }, async () => {
  await page.goto(`${base}/studio/#token=${token}`);
  await page.locator("#studio").waitFor();
  await page.locator("#preset option[value=karaoke]").waitFor({ state: "attached" });

  // Dropped on the drop zone, a file over http.max_upload_bytes (1 MiB here): the server's 413
  // is a message, nothing is listed.
  const dropped = await page.evaluateHandle((seed) => {
    const bytes = new Uint8Array(1_300_000);
    bytes[0] = seed;
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], "long.wav", { type: "audio/wav" }));
    return dt;
  }, Date.now() % 250);
  await page.dispatchEvent("#drop", "dragover", { dataTransfer: dropped });
  assert.equal(await page.locator("#drop.over").count(), 1, "the drop zone shows it will take the file");
  await page.dispatchEvent("#drop", "drop", { dataTransfer: dropped });
  await page.locator("#message", { hasText: "too large for this server" }).waitFor();
  await page.locator("#upload-text", { hasText: "long.wav was not uploaded" }).waitFor();
  assert.equal(await page.locator("#song-list button", { hasText: "long.wav" }).count(), 0);
  await shot("too-large");

  const wav = Buffer.from(sineWav(1.0, 440, 1 + (Date.now() % 20000), 16000));
  await page.setInputFiles("#file", { name: "short.wav", mimeType: "audio/wav", buffer: wav });
  await page.locator("#song-title", { hasText: "short.wav" }).waitFor();
  await page.locator("#song-meta", { hasText: /^ready/ }).waitFor({ timeout: 60_000 });

  // Generate: a duration over musicgen.max_duration_seconds is the server's 422; a good request
  // is a new song, open at once and `generating`, whose queued job can be canceled.
  await page.fill("#prompt", `a calm piano with soft rain ${Date.now()}`);
  await page.fill("#generate-seconds", "60");
  await page.click("#generate-run");
  await page.locator("#message", { hasText: "refused these settings" }).waitFor();
  assert.match(await page.locator("#message").textContent(), /duration/);
  await shot("generate-refused");
  await page.fill("#generate-seconds", "5");
  await page.click("#generate-run");
  await page.locator("#song-meta", { hasText: /^generating/ }).waitFor();
  const generated = await page.locator("#song-title").textContent();
  await page.locator("#song-list button", { hasText: generated }).waitFor();
  const generating = await jobRow(page, "musicgen", "queued", 30_000);
  await generating.getByRole("button", { name: "Cancel" }).click();
  await jobRow(page, "musicgen", "canceled", 30_000);
  // Canceled before any worker started it: the song fails at once, with nothing stored.
  await page.locator("#song-meta", { hasText: /^failed · generation_canceled/ }).waitFor({ timeout: 30_000 });
  await shot("generate-canceled");
  await page.locator("#song-list button", { hasText: "short.wav" }).click();
  await page.locator("#song-title", { hasText: "short.wav" }).waitFor();

  // Cancel a job no worker has started: it ends canceled at once; Retry asks for it again,
  // the same job's next attempt, which its row shows at once, before any worker starts it.
  await page.selectOption("#model", "pitch");
  await page.click("#run");
  const queued = await jobRow(page, "pitch", "queued", 30_000);
  const jobId = await queued.getAttribute("data-job");
  await queued.getByRole("button", { name: "Cancel" }).click();
  const canceled = await jobRow(page, "pitch", "canceled", 30_000);
  assert.equal(await canceled.getAttribute("data-job"), jobId);
  assert.equal(await canceled.getByRole("button", { name: "Cancel" }).count(), 0);
  await shot("canceled");
  await canceled.getByRole("button", { name: "Retry" }).click();
  const again = await jobRow(page, "pitch", "queued", 30_000);
  assert.equal(await again.getAttribute("data-job"), jobId, "a retry is the same job");
  await page.locator("#message", { hasText: "Retry of pitch requested (attempt 2)" }).waitFor();
  assert.match(await again.textContent(), /queued \(attempt 2\)/);
  await shot("retried");

  // The karaoke preset: one pipeline, four steps shown before and after it is asked for.
  await page.selectOption("#preset", "karaoke");
  const planned = await page.locator("#preset-steps li").allTextContents();
  assert.equal(planned.length, 4, planned.join(" | "));
  assert.match(planned[3], /^lyrics: gemma3n\/.*reads separate\/vocals/);
  assert.match(planned[1], /^transcribe: whisper\/.*reads separate\/vocals/);
  await page.click("#run");
  const running = await pipelineRow(page, "karaoke", "queued", 30_000);
  const steps = await running.locator(".steps li").evaluateAll((ls) => ls.map((l) => [l.dataset.step, l.dataset.status]));
  assert.deepEqual(steps, [["separate", "queued"], ["transcribe", "queued"], ["pitch", "queued"], ["lyrics", "queued"]]);
  assert.equal(await running.locator(":scope > progress").evaluate((p) => p.value), 0);
  await shot("pipeline-queued");
  // Cancel it: the step already requested (separate) is canceled by the orchestrator, the
  // three waiting on it by the pipeline manager; the pipeline ends canceled, without a button.
  await running.getByRole("button", { name: "cancel the karaoke pipeline" }).click();
  await page.locator("#message", { hasText: "Cancel requested for the karaoke pipeline" }).waitFor();
  const stopped = await pipelineRow(page, "karaoke", "canceled", 60_000);
  await page.waitForFunction(() => [...document.querySelectorAll('#pipelines > li[data-preset="karaoke"] .steps li')].every((l) => l.dataset.status === "canceled"), null, { timeout: 60_000 });
  assert.equal(await stopped.getByRole("button").count(), 0);
  await shot("pipeline-canceled");

  // A burst of requests (the Refresh button, 300 times at once) goes over the rate limit: the
  // page says to wait, with the server's Retry-After.
  await page.evaluate(() => {
    const refresh = document.getElementById("refresh");
    for (let i = 0; i < 300; i++) refresh.click();
  });
  await page.locator("#message", { hasText: /^Too many requests; try again in \d+ s\.$/ }).waitFor({ timeout: 60_000 });
  await shot("too-many-requests");
});

test("a refused token is a message and the sign-in form, not a blank page", { timeout: 60_000 }, async () => {
  // A page of its own: the same URL with another fragment would not load the page again.
  await session.newPage();
  page = session.page;
  await page.goto(`${base}/studio/#token=not-a-token`);
  await page.locator("#message", { hasText: "token was refused" }).waitFor();
  await page.locator("#sign-in:not([hidden])").waitFor();
  await shot("unauthorized");
});
