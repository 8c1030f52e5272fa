// Headless Chromium bench of the Harmony view: the virtualized view against one span per token.
// Each case runs in a fresh browser so that memory figures do not leak between cases.
//   node bench/harmony_view/build.mjs && node bench/harmony_view/run.mjs [runs]
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const here = dirname(fileURLToPath(import.meta.url));
const runs = Number(process.argv[2] ?? 3);

// Resident memory of the page's renderer process(es), in MiB: the "page memory" of the goal.
function rendererRssMiB(browserPid) {
  let total = 0;
  const children = (pid) =>
    readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
      try {
        return readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(pid);
      } catch {
        return false;
      }
    });
  const stack = [browserPid];
  while (stack.length) {
    const pid = stack.pop();
    for (const child of children(pid)) {
      stack.push(child);
      try {
        if (!readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('--type=renderer')) continue;
        const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child}/status`, 'utf8'));
        if (rss) total += Number(rss[1]) / 1024;
      } catch {
        /* gone */
      }
    }
  }
  return total;
}

async function one(kind, n) {
  // launchServer, not launch: only the server exposes the browser's pid, needed to find its renderer.
  const server = await chromium.launchServer({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const browser = await chromium.connect(server.wsEndpoint());
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    await page.goto(pathToFileURL(join(here, 'index.html')).href);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    if (kind === 'empty') {
      await cdp.send('HeapProfiler.collectGarbage');
      return { rendererRssMiB: rendererRssMiB(server.process().pid), idleTwoFrameMs: await page.evaluate(() => window.bench.idleFrames(40)) };
    }
    // The first render in a page pays for compiling the schema validator and for JIT warm-up; the
    // second is what every later output costs (JupyterLab compiles the validator at start-up).
    const cold = await page.evaluate(([k, count]) => window.bench.render(k, count), [kind, n]);
    const rendered = kind === 'virtual' ? await page.evaluate(([k, count]) => window.bench.render(k, count), [kind, n]) : cold;
    rendered.coldFirstPaintMs = cold.firstPaintMs;
    rendered.coldValidateMs = cold.validateMs;
    await cdp.send('HeapProfiler.collectGarbage');
    const metrics = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    const rss = rendererRssMiB(server.process().pid);
    const jumps = await page.evaluate(() => window.bench.jumps(40));
    return { ...rendered, jsHeapMiB: metrics.JSHeapUsedSize / 2 ** 20, nodes: metrics.Nodes, rendererRssMiB: rss, ...jumps };
  } finally {
    await browser.close();
    await server.close();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
{
  const results = [];
  for (let r = 0; r < runs; r++) results.push(await one('empty', 0));
  const row = { kind: 'empty page', rendererRssMiB: Number(median(results.map((x) => x.rendererRssMiB)).toFixed(1)), idleTwoFrameMs: Number(median(results.map((x) => x.idleTwoFrameMs)).toFixed(1)) };
  rows.push(row);
  console.log(JSON.stringify(row));
}
for (const n of [100_000, 300_000]) {
  for (const kind of ['virtual', 'naive']) {
    const results = [];
    for (let r = 0; r < runs; r++) results.push(await one(kind, n));
    const row = { kind, tokens: n };
    for (const key of ['coldFirstPaintMs', 'coldValidateMs', 'firstPaintMs', 'validateMs', 'jsHeapMiB', 'rendererRssMiB', 'nodes', 'syncMs', 'maxSyncMs', 'twoFrameMs']) {
      row[key] = Number(median(results.map((x) => x[key])).toFixed(1));
    }
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
