// Builds the /studio page into orchestrator/studio/ (committed: the Rust build embeds it and
// never needs Node): studio.js is main.ts and the SDK bundled and minified; index.html and
// studio.css are copied. `--check` builds into a temporary folder and fails when the committed
// copy differs (run `npm run build:studio` and commit).
import { build } from "esbuild";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const committed = join(here, "../../../orchestrator/studio");
const FILES = ["index.html", "studio.css", "studio.js"];
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "roar-studio-")) : committed;

try {
  await build({
    entryPoints: [join(here, "main.ts")],
    outfile: join(out, "studio.js"),
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(join(here, "index.html"), join(out, "index.html"));
  copyFileSync(join(here, "studio.css"), join(out, "studio.css"));
  if (check) {
    const stale = FILES.filter((f) => !readFileSync(join(out, f)).equals(readFileSync(join(committed, f))));
    if (stale.length) {
      console.error(`orchestrator/studio/ is stale (${stale.join(", ")}): run \`npm run build:studio\` in sdk/typescript and commit it`);
      process.exitCode = 1;
    } else {
      console.log("orchestrator/studio/ matches its sources");
    }
  } else {
    for (const f of FILES) {
      const raw = statSync(join(out, f)).size;
      console.log(`${f}: ${raw} bytes, ${gzipSync(readFileSync(join(out, f)), { level: 9 }).length} gzipped`);
    }
  }
} finally {
  if (check) rmSync(out, { recursive: true, force: true });
}
