export interface Series {
  title: string;
  unit?: string;
  x: number[];
  y: number[];
  /** Ticks in exponent notation (5e-5): a learning rate in SI prefixes reads "50µ". */
  exponent?: boolean;
  /** A fixed y range, e.g. 0 to 100 for a rate, so that a flat curve near 0 does not look like progress. */
  range?: [number, number];
  /** What an empty chart says; "no step logged yet" by default. */
  empty?: string;
}

/** Draws a line chart into a host; drawing again into the same host updates it in place. */
export interface ChartBackend {
  draw(host: HTMLElement, series: Series): void;
  resize?(host: HTMLElement): void;
}

const SVG = 'http://www.w3.org/2000/svg';
const W = 320;
const H = 140;
const PAD = { left: 44, right: 8, top: 8, bottom: 20 };

/** An SVG element with its class; the overlay of runs draws with the same parts. */
export function svgNode<K extends keyof SVGElementTagNameMap>(tag: K, cls: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  node.setAttribute('class', cls);
  return node;
}

/** An axis label: exponent form only where decimals would be unreadable. */
export function tick(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) < 1e-2 || Math.abs(v) >= 1e5) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

/** Small SVG line charts built with DOM calls; what shows until plotly has loaded, or without it. */
export const svgCharts: ChartBackend = {
  draw(host, series) {
    let svg = host.querySelector('svg.ossft-svg-chart') as SVGSVGElement | null;
    if (!svg) {
      host.replaceChildren();
      svg = svgNode('svg', 'ossft-svg-chart');
      svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
      svg.setAttribute('role', 'img');
      svg.append(
        svgNode('path', 'ossft-axis'),
        svgNode('path', 'ossft-series'),
        svgNode('text', 'ossft-ymax'),
        svgNode('text', 'ossft-ymin'),
        svgNode('text', 'ossft-xmax'),
      );
      host.appendChild(svg);
    }
    const points: [number, number][] = [];
    for (let i = 0; i < series.x.length; i++) {
      const y = series.y[i];
      if (typeof y === 'number' && Number.isFinite(y)) points.push([series.x[i], y]);
    }
    const last = points[points.length - 1];
    svg.setAttribute(
      'aria-label',
      `${series.title}: ${points.length} points${last ? `, latest ${tick(last[1])}${series.unit ? ' ' + series.unit : ''}` : ''}`,
    );
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const x0 = Math.min(...xs, 0);
    const x1 = Math.max(...xs, 1);
    let y0 = Math.min(...ys);
    let y1 = Math.max(...ys);
    if (!points.length) {
      y0 = 0;
      y1 = 1;
    }
    if (series.range) [y0, y1] = series.range;
    if (y0 === y1) {
      y0 -= 0.5 * Math.abs(y0 || 1);
      y1 += 0.5 * Math.abs(y1 || 1);
    }
    const sx = (x: number) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
    const sy = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
    const d = points.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    svg.querySelector('.ossft-series')!.setAttribute('d', d);
    svg.querySelector('.ossft-axis')!.setAttribute('d', `M${PAD.left},${PAD.top}V${H - PAD.bottom}H${W - PAD.right}`);
    const label = (cls: string, x: number, y: number, text: string, anchor: string) => {
      const node = svg!.querySelector(`.${cls}`)!;
      node.setAttribute('x', String(x));
      node.setAttribute('y', String(y));
      node.setAttribute('text-anchor', anchor);
      node.textContent = text;
    };
    label('ossft-ymax', PAD.left - 4, PAD.top + 8, tick(y1), 'end');
    label('ossft-ymin', PAD.left - 4, H - PAD.bottom, tick(y0), 'end');
    label('ossft-xmax', W - PAD.right, H - 4, `step ${tick(x1)}`, 'end');
  },
};

/** Step ticks: whole steps only; one per step while there are few. */
function stepAxis(x: number[]): Record<string, unknown> {
  const last = x.length ? Math.max(...x) : 1;
  return { title: { text: 'step' }, tickformat: 'd', ...(last <= 10 ? { dtick: 1 } : {}), automargin: true };
}

export type PlotlyModule = typeof import('plotly.js-dist-min').default;
let plotly: Promise<PlotlyModule | null> | null = null;

// plotly is over 1 MB; it is fetched the first time a dashboard shows, as its own chunk, so that
// opening JupyterLab does not pay for it.
export function loadPlotly(): Promise<PlotlyModule | null> {
  plotly ??= import(/* webpackChunkName: "plotly" */ 'plotly.js-dist-min')
    .then((m) => (m as unknown as { default?: PlotlyModule }).default ?? (m as unknown as PlotlyModule))
    .catch(() => null);
  return plotly;
}

// A chart follows its box: the box's height is the stylesheet's, its width the notebook's or the
// panel's. A chart drawn while its output was hidden (Run All in a background tab, a collapsed side
// panel) has no size to take, so every later change of the box's size redraws it.
const observed = new WeakSet<HTMLElement>();

export function followSize(host: HTMLElement, Plotly: PlotlyModule): void {
  if (observed.has(host) || typeof ResizeObserver === 'undefined') return;
  observed.add(host);
  let width = -1;
  let height = -1;
  new ResizeObserver((entries) => {
    const box = entries[entries.length - 1].contentRect;
    if (box.width === 0 || box.height === 0 || (box.width === width && box.height === height)) return;
    width = box.width;
    height = box.height;
    void Promise.resolve(Plotly.Plots.resize(host)).catch(() => undefined);
  }).observe(host);
}

/** plotly charts, with the SVG ones standing in until plotly has loaded (and for good if it fails). */
/** Draws with plotly once it has loaded; until then (and for good if it fails) ``standIn`` draws in SVG. */
export function drawWithPlotly(host: HTMLElement, standIn: () => void, draw: (Plotly: PlotlyModule) => void): void {
  if (!host.dataset.plotly) standIn();
  void loadPlotly().then((Plotly) => {
    if (!Plotly || !host.isConnected) return;
    if (!host.dataset.plotly) {
      host.replaceChildren();
      host.dataset.plotly = '1';
    }
    followSize(host, Plotly);
    draw(Plotly);
  });
}

export const plotlyCharts: ChartBackend = {
  draw(host, series) {
    drawWithPlotly(
      host,
      () => svgCharts.draw(host, series),
      (Plotly) => {
        const colour = getComputedStyle(host).getPropertyValue('--ossft-chart-line').trim() || '#0072B2';
        // Before the first logged step plotly would invent axes from -1 to 6; a note says why it is empty.
        const empty = !series.y.some((y) => Number.isFinite(y));
        void Plotly.react(
          host,
          [
            {
              x: series.x,
              y: series.y,
              type: 'scatter',
              mode: 'lines+markers',
              marker: { size: 4 },
              line: { color: colour, width: 2 },
              name: series.title,
            },
          ],
          {
            // No plotly title: the dashboard writes one above the chart, where the mode bar cannot cover it.
            autosize: true,
            margin: { l: 8, r: 8, t: 26, b: 8 },
            xaxis: empty ? { ...stepAxis([]), range: [0, 1], showticklabels: false } : stepAxis(series.x),
            yaxis: {
              automargin: true,
              showticklabels: !empty,
              ...(series.exponent ? { exponentformat: 'e', showexponent: 'all' } : {}),
              ...(series.range ? { range: series.range } : {}),
            },
            annotations: empty
              ? [{ text: series.empty ?? 'no step logged yet', showarrow: false, xref: 'paper', yref: 'paper', x: 0.5, y: 0.5 }]
              : [],
            showlegend: false,
            paper_bgcolor: 'rgba(0,0,0,0)',
            plot_bgcolor: 'rgba(0,0,0,0)',
          },
          {
            displaylogo: false,
            responsive: false,
            modeBarButtonsToRemove: [
              'select2d',
              'lasso2d',
              'zoomIn2d',
              'zoomOut2d',
              'autoScale2d',
              'toggleSpikelines',
              'hoverClosestCartesian',
              'hoverCompareCartesian',
            ],
          },
        );
      },
    );
  },
  resize(host) {
    if (!host.dataset.plotly) return;
    void loadPlotly().then((Plotly) => {
      if (!Plotly || !host.isConnected || host.clientWidth === 0) return;
      void Promise.resolve(Plotly.Plots.resize(host)).catch(() => undefined);
    });
  },
};
