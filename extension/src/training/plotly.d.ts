// plotly.js-dist-min ships no types; the dashboard uses two functions of it.
declare module 'plotly.js-dist-min' {
  const Plotly: {
    react(root: HTMLElement, data: unknown[], layout?: unknown, config?: unknown): Promise<unknown>;
    purge(root: HTMLElement): void;
    Plots: { resize(root: HTMLElement): Promise<unknown> | void };
  };
  export default Plotly;
}
