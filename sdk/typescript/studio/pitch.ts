// The pitch curve: the pitch job's f0.csv (time,hz,midi,confidence,voiced) drawn over time
// on a note scale, with the playback position as a line.

export interface PitchPoint {
  time: number;
  midi: number | null;
}

export function parseF0Csv(text: string): PitchPoint[] {
  const lines = text.trim().split(/\r?\n/);
  const header = (lines.shift() ?? "").split(",");
  const t = header.indexOf("time");
  const m = header.indexOf("midi");
  const v = header.indexOf("voiced");
  if (t < 0 || m < 0) return [];
  return lines.map((line) => {
    const cols = line.split(",");
    const midi = cols[m] === "" || (v >= 0 && cols[v] === "0") ? null : Number(cols[m]);
    return { time: Number(cols[t]), midi: midi !== null && Number.isFinite(midi) ? midi : null };
  });
}

const NOTES = ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"];

/** Draws the curve; `position` (seconds) marks where playback is. Returns the points drawn. */
export function drawPitch(canvas: HTMLCanvasElement, points: PitchPoint[], position: number | null): number {
  const ctx = canvas.getContext("2d");
  if (!ctx) return 0;
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const voiced = points.filter((p) => p.midi !== null) as { time: number; midi: number }[];
  const end = points.length ? points[points.length - 1].time : 1;
  let lo = Math.min(...voiced.map((p) => p.midi));
  let hi = Math.max(...voiced.map((p) => p.midi));
  if (!voiced.length) [lo, hi] = [48, 72];
  lo = Math.floor(lo) - 2;
  hi = Math.ceil(hi) + 2;
  const x = (time: number) => (time / (end || 1)) * (width - 40) + 40;
  const y = (midi: number) => height - ((midi - lo) / (hi - lo)) * height;
  ctx.font = "10px sans-serif";
  ctx.fillStyle = "#888";
  ctx.strokeStyle = "rgba(128,128,128,.25)";
  for (let n = Math.ceil(lo); n <= hi; n++) {
    if (n % 12 !== 0 && n % 12 !== 9 && hi - lo > 14) continue;
    ctx.beginPath();
    ctx.moveTo(40, y(n));
    ctx.lineTo(width, y(n));
    ctx.stroke();
    ctx.fillText(`${NOTES[((n % 12) + 12) % 12]}${Math.floor(n / 12) - 1}`, 2, y(n) + 3);
  }
  ctx.strokeStyle = "#c4501b";
  ctx.lineWidth = 2;
  ctx.beginPath();
  let pen = false;
  let drawn = 0;
  for (const p of points) {
    if (p.midi === null) {
      pen = false;
      continue;
    }
    if (pen) ctx.lineTo(x(p.time), y(p.midi));
    else ctx.moveTo(x(p.time), y(p.midi));
    pen = true;
    drawn++;
  }
  ctx.stroke();
  if (position !== null) {
    ctx.strokeStyle = "#3a7dbb";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x(position), 0);
    ctx.lineTo(x(position), height);
    ctx.stroke();
  }
  return drawn;
}
