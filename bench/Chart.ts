/**
 * The network benchmark's chart: one SVG of small multiples, one panel per measurement, a
 * horizontal bar per target (median, with a min–max whisker over the rounds) and its ratio to
 * the reference (direct, or the best target where direct has no figure).
 *
 * Details: plain string building, no dependency; every text is XML-escaped. Each panel has its
 * own scale starting at zero and says whether higher or lower is better.
 */

export interface Bar { readonly target: string; readonly median: number; readonly min: number; readonly max: number; readonly ratio: string | null }
export interface Panel { readonly title: string; readonly better: "higher" | "lower"; readonly bars: ReadonlyArray<Bar> }

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const fmt = (x: number): string =>
  x >= 100 ? Math.round(x).toLocaleString("en-US") : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toPrecision(2)

const COLOURS: Record<string, string> = {
  direct: "#9e9e9e", proxyd: "#d62728", "proxyd-workers": "#e377c2", "proxyd-100k": "#ff7f7f", "proxyd-http": "#8c564b", microsocks: "#1f77b4", dante: "#2ca02c", tinyproxy: "#9467bd", "proxy-chain": "#ff7f0e",
}
const colour = (t: string) => COLOURS[t] ?? "#17becf"

const W = 1000
const COLS = 2
const PW = W / COLS
const LABEL = 110
const BAR = 230
const ROW = 22
const HEAD = 34

const panel = (p: Panel, x: number, y: number): { svg: string; height: number } => {
  const top = Math.max(1e-12, ...p.bars.map((b) => Math.max(b.max, b.median)))
  const scale = BAR / top
  const out: Array<string> = [
    `<text x="${x + 8}" y="${y + 18}" class="t">${esc(p.title)}</text>`,
    `<text x="${x + PW - 12}" y="${y + 18}" class="n" text-anchor="end">${p.better === "higher" ? "higher is better" : "lower is better"}</text>`,
  ]
  p.bars.forEach((b, i) => {
    const by = y + HEAD + i * ROW
    const w = Math.max(1, b.median * scale)
    out.push(
      `<text x="${x + LABEL - 6}" y="${by + 13}" class="l" text-anchor="end">${esc(b.target)}</text>`,
      `<rect x="${x + LABEL}" y="${by + 2}" width="${w.toFixed(1)}" height="${ROW - 7}" fill="${colour(b.target)}"><title>${esc(`${b.target}: ${fmt(b.median)} (${fmt(b.min)}–${fmt(b.max)})`)}</title></rect>`,
    )
    if (b.max > b.min) {
      const x0 = x + LABEL + b.min * scale
      const x1 = x + LABEL + b.max * scale
      const my = by + 2 + (ROW - 7) / 2
      out.push(`<path d="M${x0.toFixed(1)} ${my}H${x1.toFixed(1)}M${x0.toFixed(1)} ${my - 4}v8M${x1.toFixed(1)} ${my - 4}v8" class="w"/>`)
    }
    const vx = x + LABEL + Math.max(w, b.max * scale) + 6
    out.push(`<text x="${vx.toFixed(1)}" y="${by + 13}" class="v">${esc(fmt(b.median) + (b.ratio === null ? "" : `  ${b.ratio}`))}</text>`)
  })
  if (p.bars.length === 0) out.push(`<text x="${x + LABEL}" y="${y + HEAD + 13}" class="n">no figures</text>`)
  return { svg: out.join("\n"), height: HEAD + Math.max(1, p.bars.length) * ROW + 14 }
}

/** The whole chart: a title, a subtitle (machine, run), and the panels laid out in two columns. */
export const chart = (title: string, subtitle: ReadonlyArray<string>, panels: ReadonlyArray<Panel>): string => {
  const body: Array<string> = []
  let y = 30 + subtitle.length * 16 + 10
  for (let i = 0; i < panels.length; i += COLS) {
    let rowHeight = 0
    for (let c = 0; c < COLS && i + c < panels.length; c++) {
      const p = panel(panels[i + c]!, c * PW, y)
      body.push(p.svg)
      rowHeight = Math.max(rowHeight, p.height)
    }
    if (i > 0) body.push(`<path d="M8 ${y - 4}H${W - 8}" class="s"/>`)
    y += rowHeight
  }
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif">`,
    "<style>.t{font-size:14px;font-weight:600}.n{font-size:11px;fill:#666}.l{font-size:12px}.v{font-size:11px;fill:#333}.w{stroke:#222;stroke-width:1.2;fill:none}.s{stroke:#ddd}</style>",
    `<rect width="${W}" height="${height}" fill="#fff"/>`,
    `<text x="8" y="22" font-size="17" font-weight="700">${esc(title)}</text>`,
    ...subtitle.map((s, i) => `<text x="8" y="${42 + i * 16}" class="n">${esc(s)}</text>`),
    ...body,
    "</svg>",
    "",
  ].join("\n")
}
