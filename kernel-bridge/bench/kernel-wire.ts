/**
 * Round-trip latency of a trivial execute and IOPub throughput of a large stream output, ours vs
 * jupyter_client, on one and the same kernel, measured in alternation.
 * Run from the repo root: npx tsc -p kernel-bridge/bench && node kernel-bridge/bench/out/bench/kernel-wire.js
 */
import { execFileSync } from 'child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join } from 'path';
import { KernelClient, KernelManager, loadKernelSpec } from '../src';

// Compiled output lives deeper than the source; find the package folder by walking up.
let pkg = __dirname;
while (!existsSync(join(pkg, 'bench', 'jupyter_client_side.py'))) pkg = dirname(pkg);
const python = process.env.OSS_FINETUNE_PYTHON ?? join(pkg, '..', '.venv', 'bin', 'python');
const ROUNDS = Number(process.env.ROUNDS ?? 200);
const STREAM_BYTES = Number(process.env.STREAM_BYTES ?? 50_000_000);
// Node's JIT needs more warm-up than CPython to reach steady state; both sides get the same count.
const WARMUP = Number(process.env.WARMUP ?? 50);
const TRIALS = Number(process.env.TRIALS ?? 2);

async function ours(client: KernelClient) {
  const once = async (code: string) => {
    let got = 0;
    for await (const o of client.execute(code)) if (o.output_type === 'stream') got += o.text.length;
    return got;
  };
  for (let i = 0; i < WARMUP; i++) await once('pass');
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t = process.hrtime.bigint();
    await once('pass');
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const code = `import sys\nfor _ in range(${Math.floor(STREAM_BYTES / 10000)}):\n    sys.stdout.write('x' * 9999 + '\\n')\nsys.stdout.flush()`;
  const t = process.hrtime.bigint();
  const got = await once(code);
  const dt = Number(process.hrtime.bigint() - t) / 1e9;
  times.sort((a, b) => a - b);
  return { median_ms: times[Math.floor(times.length / 2)], p90_ms: times[Math.floor(times.length * 0.9)], mb_per_s: got / dt / 1e6, bytes: got };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'kb-bench-'));
  writeFileSync(join(dir, 'kernel.json'), JSON.stringify({ argv: [python, '-m', 'ipykernel_launcher', '-f', '{connection_file}'], display_name: 'bench', language: 'python' }));
  const manager = new KernelManager(loadKernelSpec(dir, 'bench'));
  const client = await manager.start();
  const cf = join(dir, 'conn.json');
  writeFileSync(cf, JSON.stringify(manager.connection));
  try {
    const latency: number[] = [];
    const throughput: number[] = [];
    for (let trial = 1; trial <= TRIALS; trial++) {
      const a = await ours(client);
      const b = JSON.parse(execFileSync(python, [join(pkg, 'bench', 'jupyter_client_side.py'), cf, String(ROUNDS), String(STREAM_BYTES), String(WARMUP)], { encoding: 'utf8' }).trim().split('\n').pop() as string);
      latency.push(a.median_ms / b.median_ms);
      throughput.push(a.mb_per_s / b.mb_per_s);
      console.log(JSON.stringify({ trial, ours: a, jupyter_client: b, latency_ratio: latency[trial - 1], throughput_ratio: throughput[trial - 1] }));
    }
    const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
    console.log(JSON.stringify({ trials: TRIALS, median_latency_ratio: median(latency), median_throughput_ratio: median(throughput) }));
  } finally {
    await manager.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
