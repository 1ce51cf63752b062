// Presets and pipelines: the preset picker of the process form (each preset's steps shown
// before it runs) and the file's pipelines, step by step with their progress and a cancel.
import type { PipelineView, PresetView } from "../src/index.js";
import { $, h } from "./ui.js";

const FINISHED = new Set(["completed", "failed", "canceled"]);

/** Fills the preset picker; "none" (the first option) keeps the single-model form. */
export function fillPresets(presets: PresetView[]): void {
  const select = $<HTMLSelectElement>("preset");
  select.replaceChildren(h("option", { value: "" }, "none: one model"), ...presets.map((p) => h("option", { value: p.name }, p.name)));
  select.onchange = () => showPreset(presets.find((p) => p.name === select.value) ?? null);
  showPreset(null);
}

/** A chosen preset replaces the model, variation and params inputs with its steps. */
function showPreset(p: PresetView | null): void {
  $("preset-info").hidden = !p;
  $("single").hidden = !!p;
  if (!p) return;
  $("preset-description").textContent = p.description;
  $("preset-steps").replaceChildren(
    ...p.steps.map((s) => {
      const params = Object.keys(s.params).length ? ` ${JSON.stringify(s.params)}` : "";
      const reads = s.input ? `, reads ${s.input.step}/${s.input.output}` : ", reads the upload";
      return h("li", {}, h("strong", {}, s.name), `: ${s.model}/${s.variation}${params}${reads}`);
    }),
  );
}

/** The preset picked in the process form, or null for one model. */
export function chosenPreset(): string | null {
  return $<HTMLSelectElement>("preset").value || null;
}

function bar(label: string, percent: number, status: string): HTMLProgressElement {
  const b = h("progress", { max: "100", "aria-label": label });
  b.value = status === "completed" ? 100 : percent;
  return b;
}

/** Renders the file's pipelines (newest first); `onCancel` runs when a cancel is asked for. */
export function renderPipelines(pipelines: PipelineView[], onCancel: (p: PipelineView) => void): void {
  const list = $("pipelines");
  list.replaceChildren(
    ...[...pipelines].reverse().map((p) => {
      const name = p.preset ?? "pipeline";
      const li = h(
        "li",
        { "data-pipeline": p.pipeline_id, "data-preset": p.preset ?? "", "data-status": p.status },
        h("strong", {}, name),
        ` ${p.status} `,
        bar(`${name} pipeline progress`, p.progress, p.status),
        h("span", { class: "percent" }, ` ${Math.round(p.status === "completed" ? 100 : p.progress)} %`),
      );
      if (p.canceled_at && !FINISHED.has(p.status)) li.append(" ", h("span", { class: "muted" }, "cancel requested"));
      if (!FINISHED.has(p.status) && !p.canceled_at) {
        const cancel = h("button", { type: "button", "aria-label": `cancel the ${name} pipeline` }, "Cancel pipeline");
        cancel.addEventListener("click", () => onCancel(p));
        li.append(" ", cancel);
      }
      const steps = p.steps.map((s) => {
        const reads = s.input ? ` (reads ${s.input.step}/${s.input.output})` : "";
        const error = s.error ? ` ${s.error.code}: ${s.error.message ?? ""}` : "";
        return h(
          "li",
          { "data-step": s.name, "data-step-job": s.job_id, "data-status": s.status },
          `${s.name}: ${s.model}/${s.variation} ${s.status} `,
          bar(`${name} step ${s.name} progress`, s.progress, s.status),
          h("span", { class: "percent" }, ` ${Math.round(s.status === "completed" ? 100 : s.progress)} %`),
          h("span", { class: "muted" }, `${reads}${error}`),
        );
      });
      li.append(h("ol", { class: "steps" }, ...steps));
      return li;
    }),
  );
  $("pipelines-box").hidden = pipelines.length === 0;
}

/**
 * A job's progress event moves its step's bar and its pipeline's overall bar (the mean of the
 * steps', as the server computes it) without waiting for the next status read.
 */
export function stepProgress(jobId: string, percent: number): void {
  for (const step of document.querySelectorAll<HTMLLIElement>(`#pipelines li[data-step-job="${jobId}"]`)) {
    step.querySelector("progress")!.value = percent;
    step.querySelector(".percent")!.textContent = ` ${Math.round(percent)} %`;
    const pipeline = step.closest<HTMLLIElement>("li[data-pipeline]");
    if (!pipeline) continue;
    const bars = [...pipeline.querySelectorAll<HTMLProgressElement>(".steps progress")];
    const mean = bars.reduce((sum, b) => sum + b.value, 0) / (bars.length || 1);
    pipeline.querySelector<HTMLProgressElement>(":scope > progress")!.value = mean;
    pipeline.querySelector(":scope > .percent")!.textContent = ` ${Math.round(mean)} %`;
  }
}
