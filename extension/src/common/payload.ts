import { SchemaName, formatIssue, schemaIssues } from '@oss-finetune/schema';

import { escapeControls, WHITESPACE } from './text';

export type Checked<T> = { ok: true; value: T } | { ok: false; problems: string[] };

/**
 * Validates a payload that arrived from the kernel. The schema is the only description of its
 * shape; a payload that breaks it is reported, never rendered half-way.
 */
export function checkPayload<T>(name: SchemaName, data: unknown): Checked<T> {
  let issues;
  try {
    issues = schemaIssues(name, data);
  } catch (err) {
    return { ok: false, problems: [`the payload could not be checked: ${String(err)}`] };
  }
  if (issues.length === 0) return { ok: true, value: data as T };
  return { ok: false, problems: issues.map(formatIssue) };
}

/** A readable box naming the broken rules, so a bad payload never takes the notebook down. */
export function renderProblems(host: HTMLElement, what: string, problems: string[]): void {
  host.replaceChildren();
  const box = document.createElement('div');
  box.className = 'ossft-invalid';
  box.setAttribute('role', 'alert');
  const head = document.createElement('strong');
  head.textContent = `This ${what} does not match its schema:`;
  box.appendChild(head);
  const list = document.createElement('ul');
  for (const problem of problems.slice(0, 10)) {
    const item = document.createElement('li');
    // A field name in a problem is the kernel's; its control characters show escaped.
    item.textContent = escapeControls(problem, WHITESPACE);
    list.appendChild(item);
  }
  if (problems.length > 10) {
    const more = document.createElement('li');
    more.textContent = `… and ${problems.length - 10} more`;
    list.appendChild(more);
  }
  box.appendChild(list);
  host.appendChild(box);
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${rest} s`;
  return `${rest} s`;
}

export function formatNumber(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e6)) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}
