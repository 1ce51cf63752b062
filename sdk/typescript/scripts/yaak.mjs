// Writes the Yaak workspace dev/yaak/roar.yaak.json from the OpenAPI document: one request
// per operation (folders by tag), bearer auth from the `token` variable, and environments for
// `roar dev` and a deployed instance. `--check` fails when the committed file is not what the
// document gives (an endpoint added, renamed or removed, an example body gone out of step):
// run `npm run yaak` in sdk/typescript and commit it.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "../../..");
const spec = yaml.load(readFileSync(join(root, "schemas/openapi/orchestrator.yaml"), "utf8"));
const target = join(root, "dev/yaak/roar.yaak.json");
const STAMP = "2026-01-01T00:00:00";
const WS = "wk_roar";
const v = (name) => `\${[ ${name} ]}`;

// Example bodies of the operations that take JSON, checked against their schemas below.
const EXAMPLES = {
  upload: { filename: "song.wav", size: 1764044, sha256: "0".repeat(64), mime: "audio/wav" },
  process: { file_id: v("file_id"), model: "pitch", params: { hop_ms: 10 } },
  generate: { prompt: "a calm piano with soft rain", duration_seconds: 8, params: { seed: 7 } },
  notify: { job_id: v("job_id"), status: "progress", progress: 50, message: "halfway" },
  create_webhook: { url: "https://hooks.example.com/roar", events: ["job.completed", "job.failed"] },
};
// What a path or query parameter is filled with.
const VALUES = { file_id: v("file_id"), job_id: v("job_id"), webhook_id: v("webhook_id"), name: v("output_name"), t: v("link_t"), sig: v("link_sig") };

function resolve(schema) {
  if (schema?.$ref) return resolve(schema.$ref.split("/").slice(1).reduce((o, k) => o[k], spec));
  return schema ?? {};
}

/** Every property name a schema may have, through refs, allOf, oneOf and anyOf. */
function properties(schema, seen = new Set()) {
  const s = resolve(schema);
  const names = new Set(Object.keys(s.properties ?? {}));
  for (const part of [...(s.allOf ?? []), ...(s.oneOf ?? []), ...(s.anyOf ?? [])]) {
    if (seen.has(part)) continue;
    seen.add(part);
    for (const n of properties(part, seen)) names.add(n);
  }
  return names;
}

function checkExample(op, schema, example) {
  const known = properties(schema);
  const unknown = Object.keys(example).filter((k) => !known.has(k));
  if (unknown.length) throw new Error(`${op}: the example body has ${unknown.join(", ")}, which the schema no longer has`);
  const required = resolve(schema).required ?? [];
  const missing = required.filter((k) => !(k in example));
  if (missing.length) throw new Error(`${op}: the example body lacks required ${missing.join(", ")}`);
}

const folders = new Map();
const requests = [];
let order = 0;
for (const [path, ops] of Object.entries(spec.paths)) {
  for (const [method, op] of Object.entries(ops)) {
    if (typeof op !== "object" || !op.operationId) continue;
    const tag = op.tags?.[0] ?? "other";
    if (!folders.has(tag)) folders.set(tag, `fl_${tag}`);
    const url = `${v("base_url")}${path.replace(/\{(\w+)\}/g, (_, p) => VALUES[p] ?? v(p))}`;
    const params = (op.parameters ?? []).map(resolve);
    const query = params.filter((p) => p.in === "query").map((p) => ({ enabled: p.name in VALUES, name: p.name, value: VALUES[p.name] ?? "" }));
    const headers = params.filter((p) => p.in === "header").map((p) => ({ enabled: false, name: p.name, value: "" }));
    const open = Array.isArray(op.security) && op.security.some((s) => Object.keys(s).length === 0);
    const base = {
      model: "http_request",
      createdAt: STAMP,
      updatedAt: STAMP,
      workspaceId: WS,
      folderId: folders.get(tag),
      authenticationType: open ? null : "bearer",
      authentication: open ? {} : { token: v("token") },
      description: [op.summary, op.description].filter(Boolean).join("\n\n"),
      headers,
      method: method.toUpperCase(),
      url,
      urlParameters: query,
    };
    const content = op.requestBody?.content ?? {};
    const bodies = [];
    if (content["application/json"]) {
      const example = EXAMPLES[op.operationId];
      if (!example) throw new Error(`${op.operationId} takes JSON: give it an example body in scripts/yaak.mjs`);
      checkExample(op.operationId, content["application/json"].schema, example);
      bodies.push(["", "application/json", { text: JSON.stringify(example, null, 2) }, [{ enabled: true, name: "content-type", value: "application/json" }]]);
    }
    if (content["multipart/form-data"]) bodies.push([" (multipart)", "multipart/form-data", { form: [{ enabled: true, name: "file", file: "" }] }, []]);
    if (content["application/octet-stream"]) bodies.push(["", "binary", { filePath: "" }, [{ enabled: true, name: "content-type", value: "application/octet-stream" }]]);
    if (!bodies.length) bodies.push(["", null, {}, []]);
    for (const [suffix, bodyType, body, extra] of bodies) {
      requests.push({
        ...base,
        id: `rq_${op.operationId}${suffix ? "_multipart" : ""}`,
        name: `${op.operationId}${suffix}: ${method.toUpperCase()} ${path}`,
        bodyType,
        body,
        headers: [...extra, ...headers],
        sortPriority: order++,
      });
    }
  }
}
for (const op of Object.keys(EXAMPLES)) {
  if (!requests.some((r) => r.id === `rq_${op}`)) throw new Error(`scripts/yaak.mjs has an example for ${op}, which the document no longer has`);
}

const env = (id, name, base, vars) => ({
  model: "environment", id, workspaceId: WS, createdAt: STAMP, updatedAt: STAMP, name, public: false, base,
  variables: Object.entries(vars).map(([n, value]) => ({ enabled: true, name: n, value })),
});
const workspace = {
  yaakVersion: "2025.1.0",
  yaakSchema: 4,
  timestamp: STAMP,
  resources: {
    workspaces: [{
      model: "workspace", id: WS, createdAt: STAMP, updatedAt: STAMP, name: "roar",
      description: `The roar orchestrator API (${spec.info.version}), generated from schemas/openapi/orchestrator.yaml. Pick an environment, paste a token (\`roar dev\` prints one), and set file_id / job_id / webhook_id from the answers.`,
      encryptionKeyChallenge: null,
      defaultAuthentication: { authentication: {}, authenticationType: null },
      defaultHeaders: [],
      settingValidateCertificates: true, settingFollowRedirects: true, settingRequestTimeout: 0,
    }],
    environments: [
      env("ev_roar_base", "Global", true, { base_url: "http://127.0.0.1:8080", token: "", file_id: "", job_id: "", webhook_id: "", output_name: "", link_t: "", link_sig: "" }),
      env("ev_roar_dev", "roar dev", false, { base_url: "http://127.0.0.1:8080", token: "paste the dev token roar dev prints" }),
      env("ev_roar_deployed", "deployed", false, { base_url: "https://roar.example.org", token: "a token from your identity provider" }),
    ],
    folders: [...folders].map(([name, id], i) => ({
      model: "folder", id, createdAt: STAMP, updatedAt: STAMP, workspaceId: WS, folderId: null, description: "", name,
      defaultAuthentication: { authentication: {}, authenticationType: null }, defaultHeaders: [], sortPriority: i,
    })),
    httpRequests: requests,
    grpcRequests: [],
    websocketRequests: [],
  },
};
const text = JSON.stringify(workspace, null, 2) + "\n";
if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(target, "utf8");
  } catch {}
  if (committed !== text) {
    console.error("dev/yaak/roar.yaak.json is stale: run `npm run yaak` in sdk/typescript and commit it");
    process.exit(1);
  }
  console.log(`dev/yaak/roar.yaak.json matches the OpenAPI document (${requests.length} requests)`);
} else {
  writeFileSync(target, text);
  console.log(`wrote dev/yaak/roar.yaak.json (${requests.length} requests)`);
}
