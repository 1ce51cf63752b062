// The /studio page in headless Chromium against the real stack that tests/e2e/e2e_studio.rs
// started (the pitch worker on CREPE tiny, the demucs worker on the small fixture network):
// sign in by the link `roar dev` prints, upload a generated WAV with progress, the duplicate
// and unprocessable messages, pitch and demucs to 100 %, the stems playing together with solo,
// the pitch curve. Every step leaves a screenshot in $ROAR_STUDIO_SCREENSHOTS.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

import { env, sineWav } from "../../test/helpers.mjs";

const base = env("ROAR_STUDIO_URL");
const token = env("ROAR_STUDIO_TOKEN");
const shots = env("ROAR_STUDIO_SCREENSHOTS");
const executablePath = process.env.ROAR_STUDIO_CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

let browser;
let page;
const responses = [];
let step = 0;

async function shot(name) {
  step += 1;
  await page.screenshot({ path: join(shots, `${String(step).padStart(2, "0")}-${name}.png`), fullPage: true });
}

before(async () => {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // As root in CI containers Chromium needs --no-sandbox; media must play without a gesture.
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
  });
  page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
  page.on("response", (r) => responses.push(r));
  page.on("pageerror", (e) => console.error("page error:", e));
});

after(async () => {
  await browser?.close();
});

/** The job row of `model` once `done(row)` holds. */
async function jobRow(model, status, timeout = 120_000) {
  const row = page.locator(`#jobs li[data-status="${status}"]`, { has: page.locator("strong", { hasText: new RegExp(`^${model}/`) }) });
  await row.first().waitFor({ timeout });
  return row.first();
}

test("the studio, as a user goes through it", { timeout: 240_000 }, async () => {
  // Signed in by the link: the token leaves the address bar.
  await page.goto(`${base}/studio/#token=${token}`);
  await page.locator("#studio").waitFor();
  assert.equal(new URL(page.url()).hash, "", "the token is taken out of the URL");
  await page.locator("#model option").first().waitFor({ state: "attached" });
  await shot("signed-in");

  // Page weight: what crossed the wire for the page itself (compressed bodies and headers).
  let total = 0;
  let js = 0;
  for (const r of responses.filter((r) => new URL(r.url()).pathname.startsWith("/studio/"))) {
    const s = await r.request().sizes();
    assert.equal(r.headers()["content-encoding"], "gzip", `${r.url()} is served compressed`);
    assert.match(r.headers()["content-security-policy"] ?? "", /script-src 'self'/);
    total += s.responseBodySize + s.responseHeadersSize;
    if (r.url().endsWith(".js")) js += s.responseBodySize;
  }
  console.log(`studio page weight: ${total} bytes over the wire (gzip, with headers), of which JavaScript ${js} bytes`);
  // A timing, printed for the record only (a loaded machine says nothing about the page).
  const nav = await page.evaluate(() => performance.getEntriesByType("navigation")[0].toJSON());
  console.log(`studio page load event after ${Math.round(nav.loadEventEnd)} ms (this run, not a benchmark)`);
  assert.ok(js > 0 && js <= 200 * 1024, `JavaScript ${js} bytes (gzip) within 200 KB`);

  // Upload with progress.
  // New content on every run (one sample differs), so that a rerun against one stack uploads it again.
  const wav = Buffer.from(sineWav(2.0, 330, 1 + (Date.now() % 20000), 44100));
  await page.setInputFiles("#file", { name: "melody.wav", mimeType: "audio/wav", buffer: wav });
  await page.locator("#upload-text", { hasText: "Uploaded melody.wav" }).waitFor();
  assert.equal(await page.locator("#upload-progress").evaluate((p) => p.value), 100);
  await page.locator("#song-title", { hasText: "melody.wav" }).waitFor();
  await page.locator("#song-meta", { hasText: /^ready/ }).waitFor({ timeout: 60_000 });
  await shot("uploaded");

  // The same content again: the 409 duplicate is a message and the existing file opens.
  await page.setInputFiles("#file", { name: "again.wav", mimeType: "audio/wav", buffer: wav });
  await page.locator("#message", { hasText: "Already uploaded" }).waitFor();
  await page.locator("#song-title", { hasText: "melody.wav" }).waitFor();
  await shot("duplicate");

  // A parameter out of its bounds: the server's 422 is shown, the page stays usable.
  await page.selectOption("#model", "pitch");
  await page.fill("#param-hop_ms", "-5");
  await page.click("#run");
  await page.locator("#message", { hasText: "refused these settings" }).waitFor();
  assert.match(await page.locator("#message").textContent(), /hop_ms/);
  await shot("unprocessable");
  await page.fill("#param-hop_ms", "");

  // Pitch, watched to 100 % over SSE; the curve is drawn.
  // The bar moves while the job runs (progress events over SSE): some value strictly between
  // 0 and 100 shows up on the way.
  const seen = page.evaluate(() => new Promise((resolve) => {
    const values = new Set();
    const obs = new MutationObserver(() => {
      for (const p of document.querySelectorAll('#jobs li[data-status="running"] progress')) values.add(p.value);
      if ([...values].some((v) => v > 0 && v < 100)) resolve([...values]);
    });
    obs.observe(document.getElementById("jobs"), { subtree: true, childList: true, attributes: true, characterData: true });
  }));
  await page.click("#run");
  const pitch = await jobRow("pitch", "completed");
  assert.ok((await seen).length > 0);
  assert.equal(await pitch.locator("progress").evaluate((p) => p.value), 100);
  assert.match(await pitch.locator(".percent").textContent(), /100 %/);
  await page.locator("#pitch:not([hidden])").waitFor();
  await page.waitForFunction(() => Number(document.getElementById("pitch-canvas").dataset.points) > 10);
  await shot("pitch");

  // Demucs on the fixture network: progress seen moving, then the stems.
  await page.selectOption("#model", "demucs");
  await page.click("#run");
  await page.locator('#jobs li[data-status="queued"], #jobs li[data-status="running"], #jobs li[data-status="completed"]').first().waitFor();
  const demucs = await jobRow("demucs", "completed", 150_000);
  assert.equal(await demucs.locator("progress").evaluate((p) => p.value), 100);
  await page.locator("#player:not([hidden])").waitFor();
  const stems = await page.locator("#stems audio").evaluateAll((as) => as.map((a) => a.dataset.stem));
  assert.deepEqual([...stems].sort(), ["bass", "drums", "other", "vocals"]);
  await shot("stems");

  // Play them together: every element knows its duration and advances; solo mutes the others.
  await page.click("#play");
  await page.waitForFunction(() => [...document.querySelectorAll("#stems audio")].every((a) => a.duration > 1.5 && a.currentTime > 0.3), null, { timeout: 30_000 });
  await page.click('button[aria-label="solo vocals"]');
  const muted = await page.locator("#stems audio").evaluateAll((as) => Object.fromEntries(as.map((a) => [a.dataset.stem, a.muted])));
  assert.deepEqual(muted, { bass: true, drums: true, other: true, vocals: false });
  await shot("playing");
  await page.click("#play");

  // Keyboard: the controls are reachable with Tab.
  await page.keyboard.press("Tab");
  assert.notEqual(await page.evaluate(() => document.activeElement?.tagName), "BODY");
});

test("a refused token is a message and the sign-in form, not a blank page", { timeout: 60_000 }, async () => {
  // A page of its own: the same URL with another fragment would not load the page again.
  page = await browser.newPage();
  await page.goto(`${base}/studio/#token=not-a-token`);
  await page.locator("#message", { hasText: "token was refused" }).waitFor();
  await page.locator("#sign-in:not([hidden])").waitFor();
  await shot("unauthorized");
});
