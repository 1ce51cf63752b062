// What the studio's browser tests share: headless Chromium (Debian's, driven by playwright-core)
// on a page of the stack tests/e2e/e2e_studio.rs started, numbered screenshots, job rows.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import { env } from "../../test/helpers.mjs";

export const base = env("ROAR_STUDIO_URL");
export const token = env("ROAR_STUDIO_TOKEN");
const shots = env("ROAR_STUDIO_SCREENSHOTS");
const executablePath = process.env.ROAR_STUDIO_CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

/** Starts the browser; `prefix` names this file's screenshots. */
export async function launch(prefix) {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    // As root in CI containers Chromium needs --no-sandbox; media must play without a gesture.
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
  });
  let step = 0;
  const session = {
    browser,
    page: null,
    responses: [],
    async newPage() {
      session.page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
      session.page.on("response", (r) => session.responses.push(r));
      session.page.on("pageerror", (e) => console.error("page error:", e));
      return session.page;
    },
    async shot(name) {
      step += 1;
      const path = join(shots, `${prefix}-${String(step).padStart(2, "0")}-${name}.png`);
      await session.page.screenshot({ path, fullPage: true });
    },
  };
  await session.newPage();
  return session;
}

/** The job row of `model` once it shows `status`. */
export async function jobRow(page, model, status, timeout = 120_000) {
  const row = page.locator(`#jobs li[data-status="${status}"]`, { has: page.locator("strong", { hasText: new RegExp(`^${model}/`) }) });
  await row.first().waitFor({ timeout });
  return row.first();
}

/** The pipeline row of `preset` once it shows `status`. */
export async function pipelineRow(page, preset, status, timeout = 120_000) {
  const row = page.locator(`#pipelines > li[data-preset="${preset}"][data-status="${status}"]`).first();
  await row.waitFor({ timeout });
  return row;
}

/**
 * `text` spoken by espeak-ng (a mono 16-bit WAV), as the transcription tests of tests/e2e make
 * it; `salt` changes the low bits of one sample in the middle, so each run uploads new content
 * that sounds the same.
 */
export function speechWav(text, salt = 0) {
  const dir = mkdtempSync(join(tmpdir(), "roar-studio-speech-"));
  try {
    const wav = join(dir, "speech.wav");
    const run = spawnSync("espeak-ng", ["-v", "en-us", "-s", "150", "-w", wav, text], { encoding: "utf8" });
    if (run.error) throw new Error(`espeak-ng is not installed (scripts/test.sh installs it): ${run.error.message}`);
    if (run.status !== 0) throw new Error(`espeak-ng failed: ${run.stderr}`);
    const bytes = readFileSync(wav);
    const data = bytes.indexOf("data") + 8;
    const sample = data + 2 * Math.floor((bytes.length - data) / 4);
    bytes[sample] ^= 1 + (salt % 127);
    return bytes;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
