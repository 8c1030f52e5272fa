/**
 * The panel's "Export" section: writes the fine-tune in a serving format through the kernel's `export`
 * op (docs/export.md), which reads the files back with the program that serves them and compares
 * them with the model in the notebook before it says done. It shows each step, then the result and
 * the command that serves the folder.
 */
import type { ExportDone, ExportRequest, ExportStep } from '@oss-finetune/schema';

import { CommRequestError, FinetuneClient } from '../comm/client';
import { el } from '../common/dom';

export type ExportFormat = ExportRequest['format'];

/** Each format with what serves it, in one line. */
export const EXPORT_FORMATS: { format: ExportFormat; hint: string }[] = [
  { format: 'peft', hint: 'The adapter alone, as peft writes it: load it on the base model with PeftModel.from_pretrained.' },
  { format: 'merged', hint: 'The adapter folded into bf16 weights: transformers or vllm serve.' },
  { format: 'mxfp4', hint: 'Merged, with the experts in MXFP4 as OpenAI released gpt-oss: vllm serve, transformers.' },
  { format: 'vllm', hint: 'The adapter in vLLM’s gpt-oss LoRA layout: vllm serve the base model with --enable-lora.' },
  { format: 'gguf', hint: 'One file for llama.cpp (llama-server) and Ollama; checked in llama.cpp when llama-cpp-python is installed.' },
];

const EXPORT_TITLE = 'Write the fine-tune in this format, read it back with what serves it and compare it with the model in the notebook';

/** A kernel step in the status line: capitalised, and with an ellipsis while it is under way. */
function stepText(step: ExportStep): string {
  const text = step.message.charAt(0).toUpperCase() + step.message.slice(1);
  return step.stage === 'preparing' ? `${text}.` : `${text}…`;
}

function failure(error: unknown): string {
  if (error instanceof CommRequestError) return error.path && error.path !== '(root)' ? `${error.path}: ${error.rule}` : error.rule;
  return error instanceof Error ? error.message : String(error);
}

export interface ExportSectionOptions {
  /** The kernel's client now, or null without a kernel. */
  client: () => FinetuneClient | null;
  /** Whether a run trains in the kernel now: the kernel refuses to export then. */
  isTraining: () => boolean;
  /** Called when an export starts or ends, so the panel can update what depends on it. */
  onChange?: () => void;
}

export class ExportSection {
  readonly node: HTMLDetailsElement;
  readonly format: HTMLSelectElement;
  readonly folder: HTMLInputElement;
  readonly button: HTMLButtonElement;
  private readonly hint: HTMLParagraphElement;
  private readonly status: HTMLParagraphElement;
  private readonly serve: HTMLDivElement;
  private readonly serveLabel: HTMLSpanElement;
  private readonly command: HTMLElement;
  private readonly copyButton: HTMLButtonElement;
  private running: Promise<ExportDone | null> | null = null;
  private lastResult: ExportDone | null = null;

  constructor(private readonly options: ExportSectionOptions) {
    this.node = el('details', 'ossft-export');
    this.node.append(el('summary', 'ossft-more-title', 'Export'));

    const formatRow = el('div', 'ossft-field ossft-export-format');
    const formatLabel = el('label', 'ossft-label', 'Format');
    this.format = el('select', 'ossft-input');
    this.format.id = 'ossft-export-format';
    formatLabel.htmlFor = this.format.id;
    for (const { format } of EXPORT_FORMATS) this.format.append(new Option(format, format));
    this.hint = el('p', 'ossft-export-hint');
    this.format.addEventListener('change', () => this.showFormat());
    formatRow.append(formatLabel, this.format);

    const folderRow = el('div', 'ossft-field ossft-export-folder');
    const folderLabel = el('label', 'ossft-label', 'Output folder');
    this.folder = el('input', 'ossft-input');
    this.folder.type = 'text';
    this.folder.id = 'ossft-export-folder';
    this.folder.title =
      'Relative to the notebook’s folder. Empty: the format’s name in the kernel’s last run folder, as %oss_finetune save --format does.';
    folderLabel.htmlFor = this.folder.id;
    folderLabel.title = this.folder.title;
    this.folder.addEventListener('input', () => this.folder.removeAttribute('aria-invalid'));
    folderRow.append(folderLabel, this.folder);

    this.button = el('button', 'ossft-button ossft-export-button', 'Export');
    this.button.type = 'button';
    this.button.addEventListener('click', () => void this.run());

    this.status = el('p', 'ossft-export-status');
    this.status.setAttribute('aria-live', 'polite');
    this.serve = el('div', 'ossft-export-serve');
    this.serveLabel = el('span', 'ossft-export-serve-label');
    this.command = el('code', 'ossft-export-command');
    this.copyButton = el('button', 'ossft-button ossft-export-copy', 'Copy');
    this.copyButton.type = 'button';
    this.copyButton.title = 'Copy the command';
    this.copyButton.addEventListener('click', () => void this.copy());
    this.serve.append(this.serveLabel, this.command, this.copyButton);
    this.serve.hidden = true;

    this.node.append(formatRow, this.hint, folderRow, this.button, this.status, this.serve);
    this.showFormat();
    this.render();
  }

  get isExporting(): boolean {
    return this.running !== null;
  }

  get result(): ExportDone | null {
    return this.lastResult;
  }

  /** The status line's text, for the panel's status summary. */
  get statusText(): string {
    return this.status.textContent ?? '';
  }

  /** Another notebook's kernel: what was shown belongs to the one before. */
  reset(): void {
    if (this.running) return;
    this.status.textContent = '';
    this.lastResult = null;
    this.serve.hidden = true;
    this.render();
  }

  render(): void {
    const client = this.options.client();
    this.button.disabled = !client || this.isExporting || this.options.isTraining();
    if (!client) this.button.title = 'Open a notebook with a running kernel to export';
    else if (this.options.isTraining()) this.button.title = 'The kernel exports once the run has stopped';
    else this.button.title = EXPORT_TITLE;
  }

  /** Exports with the chosen format and folder; resolves with the result, or null when it failed. */
  run(): Promise<ExportDone | null> {
    if (this.running) return this.running;
    const client = this.options.client();
    if (!client) {
      this.status.textContent = 'Open a notebook with a running kernel to export.';
      return Promise.resolve(null);
    }
    const format = this.format.value as ExportFormat;
    const folder = this.folder.value.trim();
    this.serve.hidden = true;
    this.lastResult = null;
    this.folder.removeAttribute('aria-invalid');
    this.status.classList.remove('ossft-export-failed');
    this.status.textContent = `Asking the kernel to export ${format}…`;
    // The first step can come before the reply, and says more.
    let stepped = false;
    const running = client
      .exportModel(folder ? { format, folder } : { format }, {
        onStarted: (where) => {
          if (!stepped) this.status.textContent = `Exporting ${format} to ${where}…`;
        },
        onStep: (step) => {
          stepped = true;
          this.status.textContent = stepText(step);
        },
      })
      .then(
        (done) => {
          this.showResult(done);
          return done;
        },
        (error: unknown) => {
          this.status.textContent = `Export failed: ${failure(error)}`;
          this.status.classList.add('ossft-export-failed');
          if (error instanceof CommRequestError && error.path === 'folder') this.folder.setAttribute('aria-invalid', 'true');
          return null;
        },
      )
      .finally(() => {
        this.running = null;
        this.render();
        this.options.onChange?.();
      });
    this.running = running;
    this.render();
    this.options.onChange?.();
    return running;
  }

  private showFormat(): void {
    const format = this.format.value as ExportFormat;
    this.hint.textContent = EXPORT_FORMATS.find((f) => f.format === format)?.hint ?? '';
    this.folder.placeholder = `default: the last run’s folder/${format}`;
  }

  private showResult(done: ExportDone): void {
    this.lastResult = done;
    this.status.textContent = `Done. ${done.message}`;
    // A GGUF read back without llama.cpp was not run; the line says so, the colour makes it seen.
    this.status.classList.toggle('ossft-export-unchecked', !done.logits_compared);
    this.serveLabel.textContent = done.format === 'peft' ? 'Load it with:' : 'Serve it with:';
    this.command.textContent = done.serve;
    this.copyButton.textContent = 'Copy';
    this.serve.hidden = false;
  }

  private async copy(): Promise<void> {
    const text = this.command.textContent ?? '';
    try {
      await navigator.clipboard.writeText(text);
      this.copyButton.textContent = 'Copied';
    } catch {
      // Without clipboard access (an insecure origin, a denied permission) the text is selected instead.
      const range = document.createRange();
      range.selectNodeContents(this.command);
      const selection = window.getSelection();
      selection?.removeAllRanges();
      selection?.addRange(range);
      this.copyButton.textContent = 'Selected: press Ctrl+C';
    }
  }
}
