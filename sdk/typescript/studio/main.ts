// The studio page: sign in with a token, upload, pick a model and its params from /models or
// a preset from /presets, follow the jobs and pipelines live over SSE, then play, read and
// download what they made.
import { RoarClient, RoarError, type FileView, type HistoryEvent, type ModelsView, type PipelineView, type StatusView, type components } from "../src/index.js";
import { drawPitch, parseF0Csv, type PitchPoint } from "./pitch.js";
import { chosenPreset, fillPresets, renderPipelines, stepProgress } from "./pipelines.js";
import { StemPlayer, lyricWords, showTranscript, wordsOf } from "./player.js";
import { $, clearMessage, explain, formatBytes, h, show } from "./ui.js";

type JobView = components["schemas"]["JobView"];
type ParamView = components["schemas"]["ParamView"];

const TOKEN_KEY = "roar.token";
const FINISHED = new Set(["completed", "failed", "canceled"]);

let client: RoarClient | null = null;
let models: ModelsView | null = null;
let current: { fileId: string; watch: AbortController; status: StatusView | null } | null = null;
let pitch: PitchPoint[] = [];
const player = new StemPlayer();
player.onTime((t) => drawPitch($<HTMLCanvasElement>("pitch-canvas"), pitch, t));
let highlight: (t: number) => void = () => {};
player.onTime((t) => highlight(t));

function api(): RoarClient {
  if (!client) throw new Error("not signed in");
  return client;
}

/** Runs an action, turning any failure into a message (a 401 also asks for a new token). */
async function guard(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    show(explain(err));
    if (err instanceof RoarError && err.status === 401) signOut(false);
  }
}

// ---- sign in -------------------------------------------------------------------------------

function signIn(token: string): Promise<void> {
  return guard(async () => {
    const c = new RoarClient({ baseUrl: location.origin, token: () => sessionStorage.getItem(TOKEN_KEY) ?? "" });
    sessionStorage.setItem(TOKEN_KEY, token);
    client = c;
    const [m, p] = await Promise.all([c.models(), c.presets()]);
    models = m;
    fillPresets(p.presets);
    $("sign-in").hidden = true;
    $("studio").hidden = false;
    $("sign-out").hidden = false;
    clearMessage();
    fillModels();
    await refreshSongs();
  });
}

function signOut(clearAll = true): void {
  current?.watch.abort();
  current = null;
  client = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("studio").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  if (clearAll) clearMessage();
  $("token").focus();
}

// ---- upload --------------------------------------------------------------------------------

async function uploadFile(file: File): Promise<void> {
  const bar = $<HTMLProgressElement>("upload-progress");
  const text = $("upload-text");
  $("upload-state").hidden = false;
  bar.value = 0;
  text.textContent = `Uploading ${file.name}…`;
  let done = false;
  await guard(async () => {
    const up = await api().upload(file, {
      onProgress: (sent, total) => {
        bar.value = total ? Math.round((sent / total) * 100) : 100;
        text.textContent = `Uploading ${file.name}: ${formatBytes(sent)} of ${formatBytes(total)}`;
      },
    });
    bar.value = 100;
    done = true;
    if (up.duplicate) {
      text.textContent = `${file.name} was uploaded before.`;
      show(`Already uploaded: ${file.name} has the same content as a file you have, which is opened instead.`, "info");
    } else {
      text.textContent = `Uploaded ${file.name}.`;
    }
    await refreshSongs();
    await openSong(up.file_id);
  });
  if (!done) text.textContent = `${file.name} was not uploaded.`;
}

function setUpUpload(): void {
  const drop = $("drop");
  const input = $<HTMLInputElement>("file");
  $("choose").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const f = input.files?.[0];
    if (f) void uploadFile(f);
    input.value = "";
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer?.files[0];
    if (f) void uploadFile(f);
  });
}

// ---- generate ------------------------------------------------------------------------------

/**
 * `POST /generate`: the song exists at once (`generating`) and opens, read with the request's
 * consistency token so it shows before the read model would otherwise have it; its job is
 * followed live like any other.
 */
async function generate(): Promise<void> {
  const prompt = $<HTMLTextAreaElement>("prompt").value.trim();
  if (!prompt) {
    show("Describe the music to generate first.");
    $("prompt").focus();
    return;
  }
  const seconds = $<HTMLInputElement>("generate-seconds").value;
  const res = await api().generate({ prompt, duration_seconds: seconds === "" ? undefined : Number(seconds) });
  show(`${res.filename}: ${res.job.status === "queued" ? "generating" : res.job.status}.`, "info");
  await openSong(res.file_id, res.consistency_token ?? undefined);
  await refreshSongs();
}

// ---- songs ---------------------------------------------------------------------------------

async function refreshSongs(): Promise<void> {
  const items: HTMLLIElement[] = [];
  let n = 0;
  for await (const s of api().songs({ pageSize: 50 })) {
    items.push(songItem(s));
    if (++n >= 200) break;
  }
  const list = $("song-list");
  list.replaceChildren(...items);
  if (!items.length) list.append(h("li", { class: "muted" }, "No songs yet: upload one."));
}

function songLabel(s: FileView): string {
  return `${s.filename} · ${s.status} · ${formatBytes(s.size)}`;
}

function songItem(s: FileView): HTMLLIElement {
  const b = h("button", { type: "button", "data-file": s.file_id, "aria-current": String(current?.fileId === s.file_id) }, songLabel(s));
  b.addEventListener("click", () => void guard(() => openSong(s.file_id)));
  return h("li", {}, b);
}

/** Opens a song; `token`, a command's consistency token, waits until the read model has it. */
async function openSong(fileId: string, token?: string): Promise<void> {
  current?.watch.abort();
  current = { fileId, watch: new AbortController(), status: null };
  for (const b of document.querySelectorAll<HTMLButtonElement>("#song-list button")) {
    b.setAttribute("aria-current", String(b.dataset.file === fileId));
  }
  pitch = [];
  highlight = () => {};
  shown.clear();
  $("pitch").hidden = true;
  $("transcript").hidden = true;
  player.load([]);
  $("jobs").replaceChildren();
  renderPipelines([], cancelPipeline);
  $("song").hidden = false;
  await refreshStatus(token);
  $("song-title").focus();
  void follow(current);
}

/** Follows the file's events: progress moves its bar, anything else re-reads the status. */
async function follow(song: NonNullable<typeof current>): Promise<void> {
  try {
    for await (const ev of api().watch(song.fileId, { signal: song.watch.signal })) {
      if (current !== song) return;
      onEvent(ev);
    }
  } catch (err) {
    if (current === song && !song.watch.signal.aborted) show(explain(err));
  }
}

function onEvent(ev: HistoryEvent): void {
  if (ev.kind === "progress" && ev.job_id) {
    // A job event's own members are under `body` (the file's events have theirs at the top).
    const own = (ev.body.body ?? {}) as { percent?: unknown; message?: unknown };
    const percent = Number(own.percent);
    const li = document.querySelector<HTMLLIElement>(`#jobs li[data-job="${ev.job_id}"]`);
    if (li && Number.isFinite(percent)) {
      li.querySelector("progress")!.value = percent;
      li.querySelector(".percent")!.textContent = ` ${Math.round(percent)} %`;
      const msg = typeof own.message === "string" ? own.message : "";
      li.querySelector(".job-message")!.textContent = msg;
      stepProgress(ev.job_id, percent);
      return;
    }
  }
  void guard(refreshStatus);
}

let refreshing: Promise<void> | null = null;
let again = false;
let after: string | undefined;

/**
 * Re-reads `/status` (one read at a time; a burst of events causes at most one more). `token`,
 * a command's consistency token, makes the read wait until the read model has applied it, so
 * what the user just asked for shows at once.
 */
function refreshStatus(token?: string): Promise<void> {
  if (token) after = token;
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      again = false;
      const song = current;
      if (!song) return;
      const wait = after;
      after = undefined;
      const st = await api().status(song.fileId, { after: wait });
      if (current !== song) return;
      song.status = st;
      renderStatus(st);
    } while (again);
  })().finally(() => (refreshing = null));
  return refreshing;
}

function renderStatus(st: StatusView): void {
  const f = st.file;
  $("song-title").textContent = f.filename;
  const listed = document.querySelector<HTMLButtonElement>(`#song-list button[data-file="${f.file_id}"]`);
  if (listed) listed.textContent = songLabel(f);
  const meta = f.metadata ? ` · ${f.metadata.duration_seconds.toFixed(1)} s, ${f.metadata.sample_rate} Hz, ${f.metadata.channels} ch` : "";
  $("song-meta").textContent = `${f.status}${meta}${f.error ? ` · ${f.error.code}: ${f.error.message ?? ""}` : ""}`;
  $("jobs").replaceChildren(...[...st.jobs].reverse().map(jobItem));
  if (!st.jobs.length) $("jobs").append(h("li", { class: "muted" }, "No jobs yet."));
  renderPipelines(st.pipelines, cancelPipeline);
  void showResults(st.jobs);
}

function jobItem(j: JobView): HTMLLIElement {
  const bar = h("progress", { max: "100", "aria-label": `${j.model} progress` });
  bar.value = j.status === "completed" ? 100 : j.progress;
  const li = h(
    "li",
    { "data-job": j.job_id, "data-status": j.status },
    h("strong", {}, `${j.model}/${j.variation}`),
    ` ${j.status}${j.attempt > 1 ? ` (attempt ${j.attempt})` : ""} `,
    bar,
    h("span", { class: "percent" }, ` ${Math.round(bar.value)} %`),
    " ",
    h("span", { class: "job-message muted" }, j.error ? `${j.error.code}: ${j.error.message ?? ""}` : (j.message ?? "")),
  );
  if (!FINISHED.has(j.status)) {
    const cancel = h("button", { type: "button" }, "Cancel");
    cancel.addEventListener("click", () => void guard(async () => {
      const res = await api().cancel(j.job_id);
      show(`Cancel requested for ${j.model}.`, "info");
      await refreshStatus(res.consistency_token);
    }));
    li.append(" ", cancel);
  } else if (j.status !== "completed") {
    const retry = h("button", { type: "button" }, "Retry");
    // The same request again is the next attempt of the same job (its id covers model,
    // variation, params and input); the admin-only retry endpoint is not needed for that.
    retry.addEventListener("click", () => void guard(async () => {
      const input = j.input ? { job_id: j.input.job_id, output: j.input.output } : undefined;
      const res = await api().process({ file_id: j.file_id, model: j.model, variation: j.variation, params: j.params, input } as never);
      const attempt = "attempt" in res && typeof res.attempt === "number" ? ` (attempt ${res.attempt})` : "";
      show(`Retry of ${j.model} requested${attempt}.`, "info");
      await refreshStatus(tokenOf(res));
    }));
    li.append(" ", retry);
  }
  if (j.outputs.length) {
    li.append(h("div", { class: "outputs" }, ...j.outputs.map((o) => h("a", { href: o.url ?? "#", download: o.path.split("/").pop() ?? "" }, `${o.path.split("/").pop()} (${formatBytes(o.size)})`))));
  }
  return li;
}

const shown = new Map<string, string>();

/** Fills the player, pitch curve and transcript from the newest completed job of each kind. */
async function showResults(jobs: JobView[]): Promise<void> {
  const latest = (model: string) => [...jobs].reverse().find((j) => j.model === model && j.status === "completed" && j.outputs.length);
  const demucs = latest("demucs");
  if (demucs && shown.get("demucs") !== demucs.job_id + current?.fileId) {
    shown.set("demucs", demucs.job_id + current?.fileId);
    const stems = demucs.outputs.filter((o) => o.kind === "stem" && o.url).map((o) => ({ name: (o.path.split("/").pop() ?? "").replace(/\.[^.]+$/, ""), url: o.url! }));
    player.load(stems);
  }
  const p = latest("pitch");
  const f0 = p?.outputs.find((o) => o.kind === "f0" && o.path.endsWith(".csv") && o.url);
  if (p && f0 && shown.get("pitch") !== p.job_id + current?.fileId) {
    shown.set("pitch", p.job_id + current?.fileId);
    pitch = parseF0Csv(await (await fetch(f0.url!)).text());
    $("pitch").hidden = false;
    const drawn = drawPitch($<HTMLCanvasElement>("pitch-canvas"), pitch, player.playing ? player.time : null);
    $("pitch-canvas").dataset.points = String(drawn);
  }
  // Aligned lyrics (gemma3n) when there are some, else whisper's transcript.
  const g = latest("gemma3n");
  const lyrics = g?.outputs.find((o) => o.kind === "lyrics_json" && o.url);
  const w = latest("whisper");
  const seg = w?.outputs.find((o) => o.kind === "segments" && o.url);
  if (g && lyrics) {
    if (shown.get("words") !== g.job_id + current?.fileId) {
      shown.set("words", g.job_id + current?.fileId);
      highlight = showTranscript(lyricWords(await (await fetch(lyrics.url!)).json()), "Lyrics");
    }
  } else if (w && seg && shown.get("words") !== w.job_id + current?.fileId) {
    shown.set("words", w.job_id + current?.fileId);
    highlight = showTranscript(wordsOf(await (await fetch(seg.url!)).json()));
  }
}

// ---- process -------------------------------------------------------------------------------

function fillModels(): void {
  const select = $<HTMLSelectElement>("model");
  select.replaceChildren(...(models?.models ?? []).map((m) => h("option", { value: m.name }, m.live || !models?.workers_known ? m.name : `${m.name} (no worker running)`)));
  fillModel();
}

function fillModel(): void {
  const m = models?.models.find((x) => x.name === $<HTMLSelectElement>("model").value);
  if (!m) return;
  $("model-description").textContent = m.description;
  const variation = $<HTMLSelectElement>("variation");
  variation.replaceChildren(...m.variations.map((v) => h("option", { value: v.name, selected: v.name === m.default_variation }, v.name)));
  $("params").replaceChildren(...m.params.map(paramInput));
}

function paramInput(p: ParamView): HTMLElement {
  const id = `param-${p.name}`;
  const hint = p.default !== undefined && p.default !== null ? ` (default ${JSON.stringify(p.default)})` : "";
  const label = h("label", { title: p.description }, `${p.name}${hint} `);
  let input: HTMLElement;
  switch (p.type) {
    case "bool":
      input = h("select", { id, "data-param": p.name, "data-type": "bool" }, h("option", { value: "" }, "default"), h("option", { value: "true" }, "yes"), h("option", { value: "false" }, "no"));
      break;
    case "int":
    case "float":
      input = h("input", { id, type: "number", "data-param": p.name, "data-type": p.type, min: String(p.min), max: String(p.max), step: p.type === "int" ? "1" : "any", placeholder: "default" });
      break;
    case "enum":
      input = h("select", { id, "data-param": p.name, "data-type": "text" }, h("option", { value: "" }, "default"), ...p.values.map((v) => h("option", { value: v }, v)));
      break;
    case "subset":
      input = h("select", { id, multiple: true, "data-param": p.name, "data-type": "subset" }, ...p.values.map((v) => h("option", { value: v }, v)));
      break;
    default:
      input = h("input", { id, type: "text", "data-param": p.name, "data-type": "text", maxlength: String(p.max_len), placeholder: "default" });
  }
  label.append(input);
  return label;
}

/** The params the user set (the others take the server's defaults). */
function chosenParams(): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const el of document.querySelectorAll<HTMLInputElement | HTMLSelectElement>("#params [data-param]")) {
    const name = el.dataset.param!;
    if (el instanceof HTMLSelectElement && el.multiple) {
      const chosen = [...el.selectedOptions].map((o) => o.value);
      if (chosen.length) params[name] = chosen;
    } else if (el.value !== "") {
      const t = el.dataset.type;
      params[name] = t === "bool" ? el.value === "true" : t === "int" || t === "float" ? Number(el.value) : el.value;
    }
  }
  return params;
}

/** The consistency token of a `/process` answer (one job, a pipeline, or the last of a list). */
function tokenOf(res: object): string | undefined {
  const one = (r: object) => ("consistency_token" in r && typeof r.consistency_token === "string" ? r.consistency_token : undefined);
  if ("jobs" in res && Array.isArray(res.jobs)) return res.jobs.map(one).filter(Boolean).at(-1);
  return one(res);
}

async function cancelPipeline(p: PipelineView): Promise<void> {
  await guard(async () => {
    const res = await api().cancelPipeline(p.pipeline_id);
    const n = res.canceled_jobs.length;
    show(`Cancel requested for the ${p.preset ?? "pipeline"} pipeline${n ? ` (${n} running step${n > 1 ? "s" : ""} asked to stop)` : ""}.`, "info");
    await refreshStatus(res.consistency_token);
  });
}

async function runModel(): Promise<void> {
  if (!current) return;
  const preset = chosenPreset();
  if (preset) {
    const res = await api().process({ file_id: current.fileId, preset } as never);
    const steps = "steps" in res ? (res.steps as unknown[]).length : 0;
    show(`${preset}: a pipeline of ${steps} step${steps === 1 ? "" : "s"}, ${"status" in res ? res.status : "requested"}.`, "info");
    await refreshStatus(tokenOf(res));
    return;
  }
  const model = $<HTMLSelectElement>("model").value;
  const body = { file_id: current.fileId, model, variation: $<HTMLSelectElement>("variation").value, params: chosenParams() };
  const res = await api().process(body as never);
  const jobs = "jobs" in res ? (res.jobs as { status: string }[]) : [res as { status: string }];
  show(`${model}: ${jobs.map((j) => j.status).join(", ")}.`, "info");
  await refreshStatus(tokenOf(res));
}

// ---- start ---------------------------------------------------------------------------------

function start(): void {
  window.addEventListener("error", (e) => show(`The page hit an error: ${e.message}`));
  window.addEventListener("unhandledrejection", (e) => show(explain(e.reason)));
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $<HTMLTextAreaElement>("token").value.trim();
    if (t) void signIn(t);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => void guard(refreshSongs));
  $("model").addEventListener("change", fillModel);
  $("generate-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void guard(generate);
  });
  $("process-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void guard(runModel);
  });
  setUpUpload();
  // `roar dev` prints a link with the token in the fragment (never sent to a server): keep
  // it for this tab and take it out of the address bar.
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) history.replaceState(null, "", location.pathname + location.search);
  const token = fromLink ?? sessionStorage.getItem(TOKEN_KEY);
  if (token) void signIn(token);
  else signOut(false);
}

start();
