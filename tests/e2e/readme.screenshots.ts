/**
 * The README's pictures: the Harmony view (with the loss mask) and the training dashboard, taken in
 * real JupyterLab. Runs only with E2E_SCREENSHOTS=1 (see playwright.config.ts), because it rewrites
 * docs/img.
 */
import * as path from 'path';
import { expect, openNotebook, output, repoPath, runAll, test, writeNotebook } from './lab';

const IMG = (name: string) => repoPath('docs', 'img', name);

// A conversation in the shape of a Multilingual-Thinking row, each message rendered by openai-harmony
// with the vendored o200k file, so the ids, special tokens and headers are the real gpt-oss ones.
// Messages are rendered one by one because render_conversation_for_training drops the analysis
// message, and the French reasoning is what the picture is about.
const HARMONY_CELL = String.raw`
import json
from IPython.display import display
from openai_harmony import (DeveloperContent, HarmonyEncodingName, Message,
                            ReasoningEffort, Role, SystemContent, load_harmony_encoding)
from oss_finetune.tokenizer import use_offline_encodings

use_offline_encodings()
enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
system = SystemContent.new().with_reasoning_effort(ReasoningEffort.MEDIUM).with_conversation_start_date("2026-11-28")
messages = [
    Message.from_role_and_content(Role.SYSTEM, system),
    Message.from_role_and_content(Role.DEVELOPER, DeveloperContent.new().with_instructions(
        "reasoning language: French\n\nYou answer questions about geography in one sentence.")),
    Message.from_role_and_content(Role.USER, "What is the capital of Australia?"),
    Message.from_role_and_content(Role.ASSISTANT,
        "L'utilisateur demande la capitale de l'Australie. Beaucoup pensent à Sydney, mais c'est "
        "Canberra, choisie comme compromis entre Sydney et Melbourne.").with_channel("analysis"),
    Message.from_role_and_content(Role.ASSISTANT, "The capital of Australia is Canberra.").with_channel("final"),
]

RETURN, MESSAGE = 200002, 200008
cols = {k: [] for k in ("ids", "text", "message", "role", "channel", "part", "trained")}
for index, m in enumerate(messages):
    ids = enc.render(m)
    if index == len(messages) - 1:
        ids = ids[:-1] + [RETURN]  # training ends the last assistant message with <|return|>
    body = ids.index(MESSAGE)
    role = m.author.role.value
    for k, token in enumerate(ids):
        cols["ids"].append(token)
        cols["text"].append(enc.decode([token]))
        cols["message"].append(index)
        cols["role"].append(role)
        cols["channel"].append(m.channel or "none")
        cols["part"].append("special" if token >= 199998 else "header" if k < body else "content")
        cols["trained"].append(role == "assistant" and k >= 2)

payload = {
    "version": 1,
    "title": "Multilingual-Thinking style row · reasoning in French",
    "conversations": [{
        "title": "capital of Australia",
        "loss_mask": "assistant",
        "messages": [{"index": i, "role": m.author.role.value, "channel": m.channel or "none"}
                     for i, m in enumerate(messages)],
        "tokens": cols,
    }],
}
display({"application/vnd.oss-finetune.harmony+json": payload, "text/plain": "harmony view"}, raw=True)
`;

// A display updated in place step by step, as the trainer does; the curve follows the shape of the
// reference run (loss 1.62 towards 1.07 over 60 steps) and is illustrative, not a measurement.
const TRAINING_CELL = String.raw`
import math
import random
from IPython.display import display, update_display

MAX_STEPS, SHOWN, SECONDS = 60, 42, 34 * 60 / 60
noise = random.Random(7)  # seeded: the picture is the same on every run
metrics = []
for step in range(1, SHOWN + 1):
    warm = min(1.0, step / 5)
    metrics.append({
        "step": step,
        "loss": round(1.07 + 0.55 * math.exp(-(step - 1) / 14) + noise.gauss(0, 0.02), 4),
        "lr": 2e-4 * warm * (1 - max(0, step - 5) / (MAX_STEPS - 5)),
        "grad_norm": round(0.28 + 0.7 * math.exp(-step / 12) + noise.gauss(0, 0.03), 4),
        "tokens_per_second": round(2450 + noise.gauss(0, 30), 1),
        "gpu_memory_gib": round(13.6 + (0.3 if step > 1 else 0) + noise.uniform(0, 0.04), 2),
        "elapsed_seconds": round(step * SECONDS, 1),
    })
    payload = {
        "version": 1, "run_id": "example-gpt-oss-20b-lora-r8", "status": "running",
        "step": step, "max_steps": MAX_STEPS, "started_at": "2026-11-28T03:00:00Z",
        "elapsed_seconds": round(step * SECONDS, 1), "eta_seconds": round((MAX_STEPS - step) * SECONDS, 1),
        "metrics": list(metrics),
    }
    bundle = {"application/vnd.oss-finetune.training+json": payload, "text/plain": f"step {step}"}
    if step == 1:
        display(bundle, raw=True, display_id="readme-run")
    else:
        update_display(bundle, raw=True, display_id="readme-run")
`;

test('README screenshots', async ({ page, lab }) => {
  await page.setViewportSize({ width: 1200, height: 1000 });
  await writeNotebook(lab, 'readme.ipynb', [HARMONY_CELL, TRAINING_CELL]);
  await openNotebook(page, lab, 'readme.ipynb');
  // Without the file browser the outputs get the full width of the picture.
  await page.evaluate(() => (window as any).jupyterapp.shell.collapseLeft());
  await runAll(page);

  const harmony = output(page, 'harmony');
  await expect(harmony.locator('[role=option].ossft-masked').first()).toBeVisible();
  await expect(harmony.getByRole('option').filter({ hasText: 'Canberra' }).first()).toBeVisible();
  await harmony.getByRole('option').filter({ hasText: 'Canberra' }).first().hover();
  await harmony.screenshot({ path: IMG('harmony-view.png') });

  const training = output(page, 'training');
  await expect(training.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '42');
  await expect(training.locator('.ossft-chart-loss .js-plotly-plot .scatterlayer .trace')).toHaveCount(1);
  await training.scrollIntoViewIfNeeded();
  await page.mouse.move(0, 0);
  await training.screenshot({ path: IMG('training-dashboard.png') });
  process.stdout.write(`saved ${path.relative(repoPath(), IMG('harmony-view.png'))}, ${path.relative(repoPath(), IMG('training-dashboard.png'))}\n`);
});
