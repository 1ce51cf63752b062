// Plays a demucs job's stems together (one clock: the first stem; the others follow it), with
// solo and mute per stem, and highlights the transcript's current word as it plays.
import { $, formatTime, h } from "./ui.js";

export interface Stem {
  name: string;
  url: string;
}

export interface Word {
  start: number;
  end: number;
  text: string;
}

type Listener = (time: number) => void;

export class StemPlayer {
  #audios: HTMLAudioElement[] = [];
  #solo = new Set<number>();
  #muted = new Set<number>();
  #listeners: Listener[] = [];

  constructor() {
    $("play").addEventListener("click", () => this.toggle());
  }

  onTime(l: Listener): void {
    this.#listeners.push(l);
  }

  get playing(): boolean {
    return this.#audios.length > 0 && !this.#audios[0].paused;
  }

  get time(): number {
    return this.#audios[0]?.currentTime ?? 0;
  }

  load(stems: Stem[]): void {
    this.stop();
    const list = $("stems");
    list.replaceChildren();
    this.#solo.clear();
    this.#muted.clear();
    this.#audios = stems.map((stem, i) => {
      const audio = h("audio", { preload: "auto", src: stem.url, "data-stem": stem.name });
      const solo = h("button", { type: "button", "aria-pressed": "false", "aria-label": `solo ${stem.name}` }, "Solo");
      const mute = h("button", { type: "button", "aria-pressed": "false", "aria-label": `mute ${stem.name}` }, "Mute");
      solo.addEventListener("click", () => this.#toggle(this.#solo, i, solo));
      mute.addEventListener("click", () => this.#toggle(this.#muted, i, mute));
      const link = h("a", { href: stem.url, download: `${stem.name}` }, "Download");
      list.append(h("li", {}, h("span", { class: "name" }, stem.name), solo, mute, link, audio));
      return audio;
    });
    const clock = this.#audios[0];
    if (clock) {
      clock.addEventListener("timeupdate", () => this.#tick());
      clock.addEventListener("ended", () => this.stop());
    }
    $("player").hidden = stems.length === 0;
  }

  #toggle(set: Set<number>, i: number, button: HTMLButtonElement): void {
    if (set.has(i)) set.delete(i);
    else set.add(i);
    button.setAttribute("aria-pressed", String(set.has(i)));
    this.#applyMix();
  }

  #applyMix(): void {
    this.#audios.forEach((a, i) => {
      a.muted = this.#muted.has(i) || (this.#solo.size > 0 && !this.#solo.has(i));
    });
  }

  #tick(): void {
    const t = this.time;
    // Followers drift apart from the clock over minutes: pull them back when audible.
    for (const a of this.#audios.slice(1)) if (Math.abs(a.currentTime - t) > 0.15) a.currentTime = t;
    $("clock").textContent = formatTime(t);
    for (const l of this.#listeners) l(t);
  }

  async toggle(): Promise<void> {
    if (this.playing) return this.stop();
    const t = this.time;
    this.#applyMix();
    for (const a of this.#audios) a.currentTime = t;
    await Promise.all(this.#audios.map((a) => a.play()));
    $("play").textContent = "Pause";
  }

  stop(): void {
    for (const a of this.#audios) a.pause();
    $("play").textContent = "Play";
  }
}

/** Words with times from whisper's segments.json (word times when it has them). */
export function wordsOf(segments: unknown): Word[] {
  const segs = (segments as { segments?: unknown[] })?.segments ?? [];
  const out: Word[] = [];
  for (const s of segs as { start: number; end: number; text: string; words?: { start: number; end: number; word?: string; text?: string }[] }[]) {
    if (s.words?.length) for (const w of s.words) out.push({ start: w.start, end: w.end, text: (w.word ?? w.text ?? "").trim() });
    else out.push({ start: s.start, end: s.end, text: s.text.trim() });
  }
  return out;
}

/** Words with times from gemma3n's lyrics.json (sections of lines of timed words). */
export function lyricWords(lyrics: unknown): Word[] {
  type Line = { text: string; start: number; end: number; words?: { text: string; start: number; end: number }[] };
  const sections = (lyrics as { sections?: { lines?: Line[] }[] })?.sections ?? [];
  const out: Word[] = [];
  for (const line of sections.flatMap((s) => s.lines ?? [])) {
    if (line.words?.length) for (const w of line.words) out.push({ start: w.start, end: w.end, text: w.text.trim() });
    else out.push({ start: line.start, end: line.end, text: line.text.trim() });
  }
  return out;
}

/** Shows timed words under `title`; the returned function highlights the word at a time. */
export function showTranscript(words: Word[], title = "Transcript"): (time: number) => void {
  $("transcript-title").textContent = title;
  const box = $("words");
  const spans = words.map((w) => h("span", { "data-start": String(w.start) }, w.text));
  box.replaceChildren(...spans.flatMap((s) => [s, " "]));
  $("transcript").hidden = words.length === 0;
  let current = -1;
  return (time) => {
    const i = words.findIndex((w) => time >= w.start && time < w.end);
    if (i === current) return;
    spans[current]?.classList.remove("current");
    spans[i]?.classList.add("current");
    current = i;
  };
}
