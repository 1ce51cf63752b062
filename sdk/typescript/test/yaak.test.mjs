// The Yaak workspace (dev/yaak/roar.yaak.json) in a real Yaak: the Yaak CLI (from its npm
// package, installed by `npm ci` in dev/yaak) imports the file into a throw-away data folder,
// lists what it made of it, then sends requests of the workspace, with the "roar dev"
// environment pointed at the stack this suite runs against, and reads the server's answers.
// The committed file is only given the stack's address, a token and a file id, as a user
// would type them into the environment; its requests and bodies are sent as they are.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

import { RoarClient } from "../dist/index.js";
import { collect, env, sineWav } from "./helpers.mjs";

const run = promisify(execFile);
const baseUrl = env("ROAR_SDK_BASE_URL");
const token = env("ROAR_SDK_TOKEN");
const workspaceFile = resolve("../../dev/yaak/roar.yaak.json");
const yaak = process.env.ROAR_YAAK_BIN || resolve("../../dev/yaak/node_modules/@yaakapp/cli-linux-x64/bin/yaak");

test("the Yaak workspace imports into Yaak and its requests reach roar", { timeout: 180_000 }, async () => {
  assert.ok(existsSync(yaak), `${yaak}: the Yaak CLI is missing; scripts/test.sh runs \`npm ci\` in dev/yaak`);
  const client = new RoarClient({ baseUrl, token });
  const up = await client.upload(sineWav(0.5, 523, 7), { filename: "yaak.wav", mime: "audio/wav" });
  await collect(client.watch(up.file_id), (ev) => ev.kind === "file_probed" || ev.kind === "file_probe_failed");

  const committed = JSON.parse(readFileSync(workspaceFile, "utf8"));
  const ws = structuredClone(committed);
  const set = (envId, values) => {
    const e = ws.resources.environments.find((x) => x.id === envId);
    assert.ok(e, `the workspace has the environment ${envId}`);
    e.variables = e.variables.map((v) => (v.name in values ? { ...v, value: values[v.name] } : v));
    for (const name of Object.keys(values)) assert.ok(e.variables.some((v) => v.name === name), `${envId} has ${name}`);
  };
  set("ev_roar_dev", { base_url: baseUrl, token });
  set("ev_roar_base", { file_id: up.file_id });

  const dir = mkdtempSync(join(tmpdir(), "roar-yaak-"));
  try {
    const file = join(dir, "roar.yaak.json");
    writeFileSync(file, JSON.stringify(ws));
    // An absolute data folder: Yaak's plugin runtime resolves its importers from it.
    const yk = (...args) => run(yaak, ["--data-dir", join(dir, "data"), ...args], { timeout: 60_000, maxBuffer: 16 << 20 });

    const r = committed.resources;
    const imported = await yk("import", file);
    assert.match(
      imported.stdout,
      new RegExp(`Imported 1 workspace, ${r.environments.length} environments, ${r.folders.length} folders, ${r.httpRequests.length} HTTP requests`),
    );

    // What Yaak holds now: every request by name, every environment.
    const lines = (out) => out.trim().split("\n").map((l) => l.match(/^(\S+) - (.*)$/)).filter(Boolean);
    // Yaak lists a request as "<method> <name>".
    const listed = lines((await yk("request", "list")).stdout);
    assert.deepEqual(listed.map(([, , m]) => m).sort(), r.httpRequests.map((q) => `${q.method} ${q.name}`).sort());
    const requests = new Map(listed.map(([, id, m]) => [m.slice(m.indexOf(" ") + 1), id]));
    const envs = new Map(lines((await yk("environment", "list")).stdout).map(([, id, name]) => [name.replace(/ \((environment|workspace)\)$/, ""), id]));
    assert.deepEqual([...envs.keys()].sort(), r.environments.map((e) => e.name).sort());

    const send = async (name) => {
      const id = requests.get(name);
      assert.ok(id, `Yaak has the request ${name}`);
      const out = await yk("send", id, "-e", envs.get("roar dev"));
      try {
        return JSON.parse(out.stdout);
      } catch {
        assert.fail(`${name}: not a JSON answer: ${out.stdout.slice(0, 500)} ${out.stderr.slice(0, 500)}`);
      }
    };
    // The bearer token and the address come from the environment: a 401 or a wrong host would
    // not answer these bodies.
    const models = await send("models: GET /models");
    assert.ok(models.models.some((m) => m.name === "pitch"), JSON.stringify(models).slice(0, 300));
    // The example body as committed, with the file id from the environment: a job is asked for.
    const job = await send("process: POST /process");
    assert.equal(job.file_id, up.file_id, JSON.stringify(job));
    assert.equal(job.model, "pitch");
    assert.match(job.job_id, /^j[0-9a-f]{32}$/);
    const status = await send("status: GET /status/{file_id}");
    assert.equal(status.file.file_id, up.file_id);
    assert.ok(status.jobs.some((j) => j.job_id === job.job_id), JSON.stringify(status.jobs));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
