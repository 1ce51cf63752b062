// The /studio page's load, measured in headless Chromium (Debian's, driven by playwright-core)
// against a running roar stack: each run opens a fresh browser context (an empty cache, as a
// first visit) signed in by the link `roar dev` prints, and reports
//   - fcp: first contentful paint (the browser's paint timing),
//   - interactive: the latest of the first contentful paint, DOMContentLoaded, the page being
//     usable (signed in, its model list filled from GET /models) and the end of the last long
//     task (> 50 ms) seen before a 2 s quiet window: a lab time to interactive for this page,
//   - load: the navigation's load event,
//   - js: JavaScript bytes over the wire (gzip) and decoded, and all bytes of the page's own
//     files (/studio/*, bodies and headers).
// Times are from the navigation's start, in ms; the summary gives the median of the runs.
// A figure is only a figure on a quiet machine (`uptime` first): scripts/bench-studio.sh starts
// a stack and runs this; docs/benchmarks.md says how to read it.
//
//   node scripts/bench-studio.mjs BASE_URL TOKEN [RUNS]      (RUNS: 5 by default)
//   ROAR_STUDIO_CHROMIUM=/path/to/chromium                    (default /usr/bin/chromium)
import { chromium } from "playwright-core";

const [base, token, runsArg = "5"] = process.argv.slice(2);
const runs = Number(runsArg);
if (!base || !token || !Number.isInteger(runs) || runs < 1) {
  console.error("usage: node scripts/bench-studio.mjs BASE_URL TOKEN [RUNS]");
  process.exit(2);
}
const QUIET_MS = 2_000;
const LIMIT_MS = 30_000;

// Runs in the page before its own scripts: long tasks and the moment the page became usable.
function observe() {
  const w = /** @type {any} */ (window);
  w.__bench = { longTaskEnd: 0, lastLongTaskAt: 0, usable: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      w.__bench.longTaskEnd = Math.max(w.__bench.longTaskEnd, e.startTime + e.duration);
      w.__bench.lastLongTaskAt = performance.now();
    }
  }).observe({ type: "longtask", buffered: true });
  const usable = () => {
    const studio = document.getElementById("studio");
    return studio && !studio.hidden && document.querySelector("#model option");
  };
  new MutationObserver((_, obs) => {
    if (!w.__bench.usable && usable()) {
      w.__bench.usable = performance.now();
      obs.disconnect();
    }
  }).observe(document, { subtree: true, childList: true, attributes: true });
}

async function once(browser) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 1400 } });
  try {
    const page = await context.newPage();
    const files = [];
    page.on("response", (r) => {
      if (new URL(r.url()).pathname.startsWith("/studio/")) files.push(r);
    });
    await page.addInitScript(observe);
    await page.goto(`${base}/studio/#token=${token}`, { waitUntil: "load", timeout: LIMIT_MS });
    await page.waitForFunction(() => /** @type {any} */ (window).__bench.usable > 0, null, { timeout: LIMIT_MS });
    // Wait out a quiet window with no long task, so the last one is known.
    await page.waitForFunction(
      (quiet) => performance.now() - Math.max(/** @type {any} */ (window).__bench.lastLongTaskAt, /** @type {any} */ (window).__bench.usable) >= quiet,
      QUIET_MS,
      { timeout: LIMIT_MS, polling: 100 },
    );
    const t = await page.evaluate(() => {
      const nav = /** @type {PerformanceNavigationTiming} */ (performance.getEntriesByType("navigation")[0]);
      const fcp = performance.getEntriesByName("first-contentful-paint")[0];
      const b = /** @type {any} */ (window).__bench;
      return {
        fcp: fcp ? fcp.startTime : NaN,
        interactive: Math.max(fcp ? fcp.startTime : 0, nav.domContentLoadedEventEnd, b.usable, b.longTaskEnd),
        load: nav.loadEventEnd,
      };
    });
    let jsWire = 0;
    let jsDecoded = 0;
    let allWire = 0;
    for (const r of files) {
      const s = await r.request().sizes();
      allWire += s.responseBodySize + s.responseHeadersSize;
      if (new URL(r.url()).pathname.endsWith(".js")) {
        jsWire += s.responseBodySize;
        jsDecoded += (await r.body()).length;
      }
    }
    if (!jsWire) throw new Error("the page loaded no JavaScript from /studio/: is this the studio?");
    return { ...t, jsWire, jsDecoded, allWire, requests: files.length };
  } finally {
    await context.close();
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ms = (x) => `${Math.round(x)} ms`;

const browser = await chromium.launch({
  executablePath: process.env.ROAR_STUDIO_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
try {
  const all = [];
  for (let i = 1; i <= runs; i++) {
    const r = await once(browser);
    all.push(r);
    console.log(
      `run ${i}: fcp ${ms(r.fcp)}, interactive ${ms(r.interactive)}, load ${ms(r.load)}; ` +
        `JS ${r.jsWire} B gzip (${r.jsDecoded} B decoded), page ${r.allWire} B in ${r.requests} requests`,
    );
  }
  const pick = (k) => median(all.map((r) => r[k]));
  console.log(
    `median of ${runs}: fcp ${ms(pick("fcp"))}, interactive ${ms(pick("interactive"))}, load ${ms(pick("load"))}; ` +
      `JS ${pick("jsWire")} B gzip (${pick("jsDecoded")} B decoded), page ${pick("allWire")} B`,
  );
} finally {
  await browser.close();
}
