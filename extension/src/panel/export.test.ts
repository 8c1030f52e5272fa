import { schemaIssues } from '@oss-finetune/schema';

import { FinetuneClients } from '../comm/client';
import { fakeKernel, flush, refusal, reply } from '../testing/kernel';
import { schemaDefaults } from './form';
import { EXPORT_FORMATS } from './export';
import { FinetunePanel } from './panel';

const FOLDER = '/home/me/notebooks/runs/20260101-120000-ab12/peft';

function done(format: string, folder: string, extra: Record<string, unknown> = {}) {
  const verification = `verified with peft: 36 greedy tokens of 3 probes equal, identical logits`;
  return {
    stage: 'done',
    message: `${format}: wrote ${folder} (36.4 KiB, 0.1 s); ${verification}`,
    format,
    folder,
    bytes: 37273,
    size: '36.4 KiB',
    seconds: 0.081,
    verification,
    logits_compared: true,
    serve: `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('openai/gpt-oss-20b'), '${folder}')`,
    ...extra,
  };
}

/**
 * A kernel whose export answers like comm.py: the reply with the folder, then the steps, then the
 * result, each a separate event. The writing step comes at once; `check()` sends the checking step
 * and `finish()` the end (`finish`'s result, or its error when it has no stage).
 */
function exportKernel(finish: (req: Record<string, any>) => Record<string, any> = (req) => done(req.format, req.folder ?? FOLDER)) {
  let event: ((body: Record<string, any>) => void) | null = null;
  let last: Record<string, any> = {};
  const k = fakeKernel((req, emit) => {
    expect(schemaIssues('comm-message', req)).toEqual([]);
    switch (req.op) {
      case 'get_config':
        return reply(req, { config: schemaDefaults(), defaults: schemaDefaults() });
      case 'list_runs':
        return reply(req, { runs: [] });
      case 'export': {
        if (req.format === 'vllm')
          return refusal(req, 'format', 'vllm exports an adapter and there is none; run `%oss_finetune lora` first');
        const folder = req.folder ?? FOLDER;
        last = req;
        event = (body) => emit({ op: 'export_update', request_id: req.request_id, ...body });
        // The first step may come before the reply: the thread starts before handle() returns.
        event({ ok: true, payload: { stage: 'writing', message: `writing ${req.format} to ${folder}` } });
        return reply(req, { started: true, folder });
      }
    }
    return null;
  });
  return {
    ...k,
    check: () =>
      event?.({
        ok: true,
        payload: {
          stage: 'checking',
          message: 'wrote 36.2 KiB in 0.1 s; reading it back with peft and comparing 3 probes with the live model',
        },
      }),
    finish: () => {
      const end = finish(last);
      event?.(end.stage ? { ok: true, payload: end } : { ok: false, error: end });
    },
  };
}

async function openPanel(k = exportKernel()) {
  const panel = new FinetunePanel({ clients: new FinetuneClients(), syncDelayMs: 0 });
  await panel.setTarget({ label: 'tutorial.ipynb', kernel: k.kernel });
  return { k, panel };
}

const q = (panel: FinetunePanel, selector: string) => panel.node.querySelector<HTMLElement>(selector)!;
const status = (panel: FinetunePanel) => q(panel, '.ossft-export-status').textContent;

describe('the panel’s Export section', () => {
  it('is folded by default and offers every format with what serves it', async () => {
    const { panel } = await openPanel();
    const section = q(panel, 'details.ossft-export') as HTMLDetailsElement;
    expect(section.open).toBe(false);
    expect(section.querySelector('summary')!.textContent).toBe('Export');
    const select = panel.exportSection.format;
    expect([...select.options].map((o) => o.value)).toEqual(['peft', 'merged', 'mxfp4', 'vllm', 'gguf']);
    expect(q(panel, '.ossft-export-hint').textContent).toContain('PeftModel.from_pretrained');
    select.value = 'gguf';
    select.dispatchEvent(new Event('change'));
    expect(q(panel, '.ossft-export-hint').textContent).toBe(EXPORT_FORMATS[4].hint);
    expect(panel.exportSection.folder.placeholder).toBe('default: the last run’s folder/gguf');
    expect((q(panel, '.ossft-export-serve') as HTMLElement).hidden).toBe(true);
  });

  it('exports, shows each step, then the result line and the command that serves the folder', async () => {
    const { k, panel } = await openPanel();
    q(panel, '.ossft-export-button').click();
    expect(panel.exportSection.button.disabled).toBe(true);
    await flush();
    expect(k.sent[k.sent.length - 1]).toEqual({ op: 'export', request_id: expect.any(String), format: 'peft' });
    expect(status(panel)).toBe(`Writing peft to ${FOLDER}…`);
    k.finish();
    await flush();
    expect(status(panel)).toBe(
      `Done. peft: wrote ${FOLDER} (36.4 KiB, 0.1 s); verified with peft: 36 greedy tokens of 3 probes equal, identical logits`,
    );
    const serve = q(panel, '.ossft-export-serve');
    expect(serve.hidden).toBe(false);
    expect(q(panel, '.ossft-export-serve-label').textContent).toBe('Load it with:');
    expect(q(panel, '.ossft-export-command').textContent).toBe(
      `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('openai/gpt-oss-20b'), '${FOLDER}')`,
    );
    expect(panel.exportSection.button.disabled).toBe(false);
    expect(panel.statusText()).toContain(`Export: Done. peft: wrote ${FOLDER}`);
  });

  it('shows the checking step while the kernel reads the files back', async () => {
    const { k, panel } = await openPanel();
    const running = panel.exportSection.run();
    await flush();
    k.check();
    await flush();
    expect(status(panel)).toBe('Wrote 36.2 KiB in 0.1 s; reading it back with peft and comparing 3 probes with the live model…');
    expect(panel.exportSection.isExporting).toBe(true);
    k.finish();
    expect((await running)?.stage).toBe('done');
  });

  it('sends the folder typed and the format chosen, and says Serve for a server format', async () => {
    const { k, panel } = await openPanel();
    panel.exportSection.format.value = 'merged';
    panel.exportSection.folder.value = '  out/merged ';
    const running = panel.exportSection.run();
    await flush();
    expect(k.sent[k.sent.length - 1]).toMatchObject({ op: 'export', format: 'merged', folder: 'out/merged' });
    k.finish();
    const result = await running;
    expect(result?.folder).toBe('out/merged');
    expect(q(panel, '.ossft-export-serve-label').textContent).toBe('Serve it with:');
  });

  it('shows the kernel’s refusal with the field and the fix', async () => {
    const { panel } = await openPanel();
    panel.exportSection.format.value = 'vllm';
    expect(await panel.exportSection.run()).toBeNull();
    expect(status(panel)).toBe('Export failed: format: vllm exports an adapter and there is none; run `%oss_finetune lora` first');
    expect(q(panel, '.ossft-export-status').classList.contains('ossft-export-failed')).toBe(true);
    expect(panel.exportSection.button.disabled).toBe(false);
  });

  it('shows a check that failed, naming the first differing token, and marks a folder the kernel refused', async () => {
    const mismatch = {
      path: 'format',
      message: "peft export at out/p does not answer like the live model: probe 1 ('What is 7 times 8?'), generated token 3",
    };
    const { k, panel } = await openPanel(exportKernel(() => mismatch));
    const running = panel.exportSection.run();
    await flush();
    k.finish();
    expect(await running).toBeNull();
    expect(status(panel)).toBe(`Export failed: format: ${mismatch.message}`);
    expect((q(panel, '.ossft-export-serve') as HTMLElement).hidden).toBe(true);

    const folderKernel = exportKernel(() => ({
      path: 'folder',
      message: 'out holds files that are not an export of ours; name another folder',
    }));
    const other = await openPanel(folderKernel);
    const again = other.panel.exportSection.run();
    await flush();
    folderKernel.finish();
    await again;
    expect(other.panel.exportSection.folder.getAttribute('aria-invalid')).toBe('true');
  });

  it('says when only the files were read back, as for a GGUF without llama-cpp-python', async () => {
    const unchecked = (req: Record<string, any>) =>
      done(req.format, FOLDER, {
        verification:
          'checked by the gguf package (23 tensors read back exactly; llama-cpp-python is not installed, so no logits were compared)',
        logits_compared: false,
        serve: `llama-server -m ${FOLDER}/model.gguf --jinja`,
      });
    const { k, panel } = await openPanel(exportKernel(unchecked));
    panel.exportSection.format.value = 'gguf';
    const running = panel.exportSection.run();
    await flush();
    k.finish();
    await running;
    expect(q(panel, '.ossft-export-status').classList.contains('ossft-export-unchecked')).toBe(true);
    expect(q(panel, '.ossft-export-command').textContent).toBe(`llama-server -m ${FOLDER}/model.gguf --jinja`);
  });

  it('keeps Export off while a run trains and without a kernel', async () => {
    const { k, panel } = await openPanel();
    k.emit({
      op: 'training_update',
      request_id: 'run:run-7',
      ok: true,
      payload: { version: 1, run_id: 'run-7', status: 'running', step: 1, max_steps: 30, metrics: [] },
    });
    await flush();
    expect(panel.exportSection.button.disabled).toBe(true);
    await panel.setTarget({ label: 'other.ipynb', kernel: null });
    expect(panel.exportSection.button.disabled).toBe(true);
    expect(await panel.exportSection.run()).toBeNull();
    expect(status(panel)).toBe('Open a notebook with a running kernel to export.');
  });

  it('fails the export when the kernel restarts before the result comes', async () => {
    const k = exportKernel();
    const statusChanged = {
      slots: [] as any[],
      connect(f: any) {
        this.slots.push(f);
      },
      disconnect(f: any) {
        this.slots = this.slots.filter((s: any) => s !== f);
      },
    };
    k.kernel.statusChanged = statusChanged;
    const { panel } = await openPanel(k);
    const running = panel.exportSection.run();
    await flush();
    statusChanged.slots.forEach((slot) => slot(k.kernel, 'restarting'));
    expect(await running).toBeNull();
    expect(status(panel)).toBe('Export failed: the kernel restarted before the export was done');
    expect(statusChanged.slots).toEqual([]);
  });

  it('writes what the kernel sends as text', async () => {
    const { k, panel } = await openPanel(exportKernel((req) => done(req.format, '<img src=x onerror=alert(1)>')));
    const running = panel.exportSection.run();
    await flush();
    k.finish();
    await running;
    expect(status(panel)).toContain('<img src=x onerror=alert(1)>');
    expect(panel.node.querySelector('img')).toBeNull();
  });
});
