import { drawWithPlotly, svgNode, tick } from '../training/charts';

/** One run's curve on a shared chart. */
export interface Line {
  /** The run's number in the view's legend ("run 2"): plotly reads markup in trace names, so run ids never go there. */
  name: string;
  colour: string;
  x: number[];
  y: number[];
}

export interface Overlay {
  title: string;
  unit?: string;
  lines: Line[];
  /** A fixed y range (0 to 100 for a rate). */
  range?: [number, number];
}

/** Draws several runs' curves over the same axes; drawing again into the same host updates it. */
export interface OverlayBackend {
  draw(host: HTMLElement, overlay: Overlay): void;
}

// Okabe–Ito, in the order the kernel's HTML fallback uses, so a run has the same colour in both.
export const RUN_COLOURS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

const W = 420;
const H = 160;
const PAD = { left: 44, right: 8, top: 8, bottom: 20 };

function finitePoints(line: Line): [number, number][] {
  const points: [number, number][] = [];
  for (let i = 0; i < line.x.length; i++) {
    const y = line.y[i];
    if (Number.isFinite(y) && Number.isFinite(line.x[i])) points.push([line.x[i], y]);
  }
  return points;
}

/** SVG curves built with DOM calls: what shows until plotly has loaded, or without it. */
export const svgOverlay: OverlayBackend = {
  draw(host, overlay) {
    host.replaceChildren();
    const svg = svgNode('svg', 'ossft-svg-chart ossft-overlay');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('role', 'img');
    const lines = overlay.lines.map((line) => ({ line, points: finitePoints(line) }));
    const all = lines.flatMap((l) => l.points);
    svg.setAttribute('aria-label', `${overlay.title}: ${lines.filter((l) => l.points.length).length} runs, ${all.length} points`);
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const x0 = Math.min(...xs, 1);
    const x1 = Math.max(...xs, x0 + 1);
    let [y0, y1] = overlay.range ?? (all.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1]);
    if (y0 === y1) {
      y0 -= 0.5 * Math.abs(y0 || 1);
      y1 += 0.5 * Math.abs(y1 || 1);
    }
    const sx = (x: number) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
    const sy = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
    const axis = svgNode('path', 'ossft-axis');
    axis.setAttribute('d', `M${PAD.left},${PAD.top}V${H - PAD.bottom}H${W - PAD.right}`);
    svg.appendChild(axis);
    for (const { line, points } of lines) {
      if (!points.length) continue;
      const path = svgNode('path', 'ossft-run-line');
      // A run with one logged step still shows, as a dot.
      const d =
        points.length === 1
          ? `M${sx(points[0][0]).toFixed(1)},${sy(points[0][1]).toFixed(1)}h0.01`
          : points.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
      path.setAttribute('d', d);
      path.setAttribute('stroke', line.colour);
      path.setAttribute('data-run', line.name);
      const title = svgNode('title', 'ossft-run-line-title');
      title.textContent = line.name;
      path.appendChild(title);
      svg.appendChild(path);
    }
    const label = (cls: string, x: number, y: number, text: string, anchor: string) => {
      const node = svgNode('text', cls);
      node.setAttribute('x', String(x));
      node.setAttribute('y', String(y));
      node.setAttribute('text-anchor', anchor);
      node.textContent = text;
      svg.appendChild(node);
    };
    label('ossft-ymax', PAD.left - 4, PAD.top + 8, tick(y1), 'end');
    label('ossft-ymin', PAD.left - 4, H - PAD.bottom, tick(y0), 'end');
    label('ossft-xmax', W - PAD.right, H - 4, `step ${tick(x1)}`, 'end');
    host.appendChild(svg);
  },
};

/** plotly, one trace per run, with the SVG curves standing in until it has loaded (and for good if it fails). */
export const plotlyOverlay: OverlayBackend = {
  draw(host, overlay) {
    drawWithPlotly(
      host,
      () => svgOverlay.draw(host, overlay),
      (Plotly) => {
        void Plotly.react(
          host,
          overlay.lines.map((line) => ({
            x: line.x,
            y: line.y,
            type: 'scatter',
            mode: 'lines+markers',
            marker: { size: 4 },
            line: { color: line.colour, width: 2 },
            name: line.name,
          })),
          {
            autosize: true,
            margin: { l: 8, r: 8, t: 26, b: 8 },
            xaxis: { title: { text: 'step' }, tickformat: 'd', automargin: true },
            yaxis: { automargin: true, ...(overlay.range ? { range: overlay.range } : {}) },
            showlegend: false,
            hovermode: 'x',
            paper_bgcolor: 'rgba(0,0,0,0)',
            plot_bgcolor: 'rgba(0,0,0,0)',
          },
          { displaylogo: false, responsive: false, modeBarButtonsToRemove: ['select2d', 'lasso2d', 'autoScale2d', 'toggleSpikelines'] },
        );
      },
    );
  },
};
