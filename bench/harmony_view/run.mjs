// Headless Chromium bench of the Harmony view: the virtualized view against one span per token.
// Each case runs in a fresh browser so that memory figures do not leak between cases.
//   node bench/harmony_view/build.mjs && node bench/harmony_view/run.mjs [runs] [--cases virtual,naive] [--sizes 100000,300000] [--page FILE]
//
// Page memory is what the page adds over the same page empty, in the same renderer: its resident
// memory (RSS) after a garbage collection, minus the RSS it had before the tokens were rendered.
// The renderer's own floor (about 330 MiB with --disable-gpu software compositing) is the same
// for every case, so it is reported once and left out of the comparison.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execFileSync } from 'node:child_process';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const here = dirname(fileURLToPath(import.meta.url));

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? 3);
const cases = option('--cases', 'virtual,naive').split(',').filter(Boolean);
const sizes = option('--sizes', '100000,300000').split(',').filter(Boolean).map(Number);
// Another build of the page, to compare two versions of the view on the same machine in one sitting.
const pageFile = resolve(option('--page', join(here, 'index.html')));

function rendererPids(browserPid) {
  const parents = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      parents.set(d, readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
    } catch {
      /* gone */
    }
  }
  const found = [];
  const stack = [String(browserPid)];
  while (stack.length) {
    const pid = stack.pop();
    for (const [child, parent] of parents) {
      if (parent !== pid) continue;
      stack.push(child);
      try {
        if (readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('--type=renderer')) found.push(child);
      } catch {
        /* gone */
      }
    }
  }
  return found;
}

// Resident memory of the browser's renderer process(es), in MiB.
function rendererRssMiB(browserPid) {
  let total = 0;
  for (const pid of rendererPids(browserPid)) {
    try {
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (rss) total += Number(rss[1]) / 1024;
    } catch {
      /* gone */
    }
  }
  return total;
}

async function settledMemory(cdp, page, browserPid) {
  // Twice: the first collection can leave work for the second (weak maps, finalizers).
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.send('HeapProfiler.collectGarbage');
  await page.waitForTimeout(300);
  const metrics = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  return { rssMiB: rendererRssMiB(browserPid), jsHeapMiB: metrics.JSHeapUsedSize / 2 ** 20, jsHeapTotalMiB: metrics.JSHeapTotalSize / 2 ** 20, nodes: metrics.Nodes };
}

async function one(kind, n) {
  // launchServer, not launch: only the server exposes the browser's pid, needed to find its renderer.
  const server = await chromium.launchServer({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const browser = await chromium.connect(server.wsEndpoint());
  const pid = server.process().pid;
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    await page.goto(pathToFileURL(pageFile).href);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const empty = await settledMemory(cdp, page, pid);
    if (kind === 'empty') {
      return { rendererRssMiB: empty.rssMiB, jsHeapMiB: empty.jsHeapMiB, nodes: empty.nodes, idleTwoFrameMs: await page.evaluate(() => window.bench.idleFrames(40)) };
    }
    // The first render in a page pays for compiling the schema validator and for JIT warm-up; the
    // second is what every later output costs (JupyterLab compiles the validator at start-up).
    const cold = await page.evaluate(([k, count]) => window.bench.render(k, count), [kind, n]);
    // Memory after the first render for both kinds, so neither carries a second render's leftovers.
    const held = await settledMemory(cdp, page, pid);
    const rendered = kind === 'virtual' ? await page.evaluate(([k, count]) => window.bench.render(k, count), [kind, n]) : cold;
    const jumps = await page.evaluate(() => window.bench.jumps(40));
    return {
      ...rendered,
      coldFirstPaintMs: cold.firstPaintMs,
      coldValidateMs: cold.validateMs,
      pageMemoryMiB: held.rssMiB - empty.rssMiB,
      pageJsHeapMiB: held.jsHeapMiB - empty.jsHeapMiB,
      jsHeapMiB: held.jsHeapMiB,
      jsHeapTotalMiB: held.jsHeapTotalMiB,
      nodes: held.nodes,
      rendererRssMiB: held.rssMiB,
      ...jumps,
    };
  } finally {
    await browser.close();
    await server.close();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x) => Number(x.toFixed(1));
let chromiumVersion = '';
try {
  chromiumVersion = execFileSync(process.env.CHROMIUM_PATH || '/usr/bin/chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch {
  /* reported as unknown */
}
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(JSON.stringify({ date: new Date().toISOString(), page: relative(here, pageFile), cpus: cpus().length, cpu: cpus()[0]?.model, chromium: chromiumVersion || 'unknown', runs, load }));
{
  const results = [];
  for (let r = 0; r < runs; r++) results.push(await one('empty', 0));
  const row = { kind: 'empty page' };
  for (const key of ['rendererRssMiB', 'jsHeapMiB', 'nodes', 'idleTwoFrameMs']) row[key] = round(median(results.map((x) => x[key])));
  console.log(JSON.stringify(row));
}
for (const n of sizes) {
  for (const kind of cases) {
    const results = [];
    for (let r = 0; r < runs; r++) results.push(await one(kind, n));
    const row = { kind, tokens: n };
    for (const key of ['coldFirstPaintMs', 'coldValidateMs', 'firstPaintMs', 'validateMs', 'pageMemoryMiB', 'pageJsHeapMiB', 'jsHeapMiB', 'jsHeapTotalMiB', 'nodes', 'rendererRssMiB', 'syncMs', 'p95SyncMs', 'maxSyncMs', 'frameMs', 'p95FrameMs', 'maxFrameMs', 'twoFrameMs']) {
      row[key] = round(median(results.map((x) => x[key])));
    }
    row.load = load();
    console.log(JSON.stringify(row));
  }
}
console.log(JSON.stringify({ done: new Date().toISOString(), load: load() }));
