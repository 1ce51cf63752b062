// Fails when src/api.d.ts is not what openapi-typescript makes of the checked-in OpenAPI
// document (regenerate with `npm run generate` and commit).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "roar-sdk-"));
try {
  const fresh = join(dir, "api.d.ts");
  execFileSync(
    process.execPath,
    ["node_modules/openapi-typescript/bin/cli.js", "../../schemas/openapi/orchestrator.yaml", "-o", fresh],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  if (readFileSync(fresh, "utf8") !== readFileSync("src/api.d.ts", "utf8")) {
    console.error("src/api.d.ts is stale: run `npm run generate` in sdk/typescript and commit it");
    process.exit(1);
  }
  console.log("src/api.d.ts matches schemas/openapi/orchestrator.yaml");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
