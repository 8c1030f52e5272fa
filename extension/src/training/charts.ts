export interface Series {
  title: string;
  unit?: string;
  x: number[];
  y: number[];
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

function svgNode<K extends keyof SVGElementTagNameMap>(tag: K, cls: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  node.setAttribute('class', cls);
  return node;
}

function tick(v: number): string {
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

type PlotlyModule = typeof import('plotly.js-dist-min').default;
let plotly: Promise<PlotlyModule | null> | null = null;

// plotly is over 1 MB; it is fetched the first time a dashboard shows, as its own chunk, so that
// opening JupyterLab does not pay for it.
function loadPlotly(): Promise<PlotlyModule | null> {
  plotly ??= import(/* webpackChunkName: "plotly" */ 'plotly.js-dist-min')
    .then((m) => (m as unknown as { default?: PlotlyModule }).default ?? (m as unknown as PlotlyModule))
    .catch(() => null);
  return plotly;
}

/** plotly charts, with the SVG ones standing in until plotly has loaded (and for good if it fails). */
export const plotlyCharts: ChartBackend = {
  draw(host, series) {
    if (!host.dataset.plotly) svgCharts.draw(host, series);
    void loadPlotly().then((Plotly) => {
      if (!Plotly || !host.isConnected) return;
      if (!host.dataset.plotly) {
        host.replaceChildren();
        host.dataset.plotly = '1';
      }
      const colour = getComputedStyle(host).getPropertyValue('--ossft-chart-line').trim() || '#0072B2';
      void Plotly.react(
        host,
        [{ x: series.x, y: series.y, type: 'scatter', mode: 'lines', line: { color: colour, width: 2 }, name: series.title }],
        {
          title: { text: series.title + (series.unit ? ` (${series.unit})` : ''), font: { size: 12 } },
          margin: { l: 48, r: 8, t: 28, b: 28 },
          height: 180,
          xaxis: { title: { text: 'step' } },
          paper_bgcolor: 'rgba(0,0,0,0)',
          plot_bgcolor: 'rgba(0,0,0,0)',
        },
        { displaylogo: false, responsive: true },
      );
    });
  },
  resize(host) {
    if (!host.dataset.plotly) return;
    void loadPlotly().then((Plotly) => Plotly?.Plots.resize(host));
  },
};
