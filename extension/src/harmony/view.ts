import type { HarmonyConversationView, HarmonyTokensPayload } from '@oss-finetune/schema';

import { el } from '../common/dom';
import { PaletteName, ViewSettings } from '../settings';
import { Alignment, CHANNELS, StreamSource, TokenSource, alignSources, diffSources, streamProblems } from './model';
import { PaneState, TokenPane } from './pane';

export type CompareMode = 'off' | 'side-by-side' | 'diff';

/** Where copied text goes; the browser clipboard unless a test or a host passes another. */
export type Clipboard = (text: string) => Promise<void>;

const browserClipboard: Clipboard = (text) => navigator.clipboard.writeText(text);

export interface HarmonyViewOptions {
  settings: ViewSettings;
  clipboard?: Clipboard;
  /** Height in px the token list may take before it scrolls. */
  maxHeight?: number;
}

/** Everything the Harmony MIME renderer shows for one payload. */
export class HarmonyView {
  readonly node: HTMLDivElement;
  readonly panes: TokenPane[] = [];
  private readonly body: HTMLDivElement;
  private readonly detail: HTMLDivElement;
  private readonly compareSelect: HTMLSelectElement;
  private readonly conversationSelect: HTMLSelectElement;
  private readonly heatmapBox: HTMLInputElement;
  private readonly maskBox: HTMLInputElement;
  private readonly maskedLegend: HTMLElement;
  private readonly status: HTMLSpanElement;
  private conversation = 0;
  // A payload with two streams is there to be compared: both show at once unless the person picks otherwise.
  private compare: CompareMode = 'side-by-side';
  private state: PaneState;
  private palette: PaletteName;
  private readonly clipboard: Clipboard;
  private readonly maxHeight: number;
  private readonly lineHeight: number;
  private readonly maskSetting: boolean;
  private disposed = false;

  constructor(
    private readonly payload: HarmonyTokensPayload,
    options: HarmonyViewOptions,
  ) {
    this.clipboard = options.clipboard ?? browserClipboard;
    this.maxHeight = options.maxHeight ?? 420;
    this.lineHeight = options.settings.lineHeight;
    this.palette = options.settings.palette;
    this.maskSetting = options.settings.showLossMask;
    this.state = {
      channels: new Set(options.settings.channels),
      showLossMask: this.maskFor(payload.conversations[0]),
      showLossHeatmap: options.settings.showLossHeatmap,
    };

    this.node = el('div', `ossft-harmony ossft-palette-${this.palette}`);
    if (payload.title) this.node.appendChild(el('div', 'ossft-title', payload.title));

    const toolbar = el('div', 'ossft-toolbar');
    toolbar.setAttribute('role', 'toolbar');
    toolbar.setAttribute('aria-label', 'Harmony token view controls');

    this.conversationSelect = el('select', 'ossft-conversation');
    this.conversationSelect.setAttribute('aria-label', 'Conversation');
    payload.conversations.forEach((c, index) => {
      const option = el('option', undefined, c.title ? `${index + 1}. ${c.title}` : `Conversation ${index + 1}`);
      option.value = String(index);
      this.conversationSelect.appendChild(option);
    });
    this.conversationSelect.addEventListener('change', () => {
      const before = this.currentConversation;
      this.conversation = Number(this.conversationSelect.value);
      const after = this.currentConversation;
      // The mask's default follows what the tokens are; a choice made for the same kind is kept.
      if ((before?.origin ?? 'data') !== (after?.origin ?? 'data')) this.setMask(this.maskFor(after));
      this.build();
    });
    if (payload.conversations.length > 1) toolbar.appendChild(this.conversationSelect);

    const filter = el('fieldset', 'ossft-filter');
    filter.appendChild(el('legend', undefined, 'Channels'));
    for (const channel of CHANNELS) {
      filter.appendChild(
        this.checkbox(
          `ossft-ch-${channel}`,
          channel,
          this.state.channels.has(channel),
          (on) => {
            const channels = new Set(this.state.channels);
            if (on) channels.add(channel);
            else channels.delete(channel);
            this.setState({ channels });
          },
          `ossft-swatch ossft-k-${channel}`,
        ),
      );
    }
    toolbar.appendChild(filter);

    const mask = this.checkbox('ossft-mask-toggle', 'loss mask', this.state.showLossMask, (on) => this.setMask(on));
    this.maskBox = mask.querySelector('input')!;
    toolbar.appendChild(mask);
    const heat = this.checkbox('ossft-heatmap-toggle', 'loss heatmap', this.state.showLossHeatmap, (on) =>
      this.setState({ showLossHeatmap: on }),
    );
    this.heatmapBox = heat.querySelector('input')!;
    toolbar.appendChild(heat);

    this.compareSelect = el('select', 'ossft-compare');
    this.compareSelect.setAttribute('aria-label', 'Compare before and after');
    for (const [value, label] of [
      ['off', 'no compare'],
      ['side-by-side', 'side by side'],
      ['diff', 'diff'],
    ]) {
      const option = el('option', undefined, label);
      option.value = value;
      this.compareSelect.appendChild(option);
    }
    this.compareSelect.value = this.compare;
    this.compareSelect.addEventListener('change', () => {
      this.compare = this.compareSelect.value as CompareMode;
      this.build();
    });
    toolbar.appendChild(this.compareSelect);

    const copyText = el('button', 'ossft-copy-text', 'Copy text');
    copyText.type = 'button';
    copyText.setAttribute('aria-label', 'Copy the shown tokens as text');
    copyText.addEventListener('click', () => void this.copy('text'));
    const copyIds = el('button', 'ossft-copy-ids', 'Copy ids');
    copyIds.type = 'button';
    copyIds.setAttribute('aria-label', 'Copy the shown token ids');
    copyIds.addEventListener('click', () => void this.copy('ids'));
    toolbar.append(copyText, copyIds);
    this.status = el('span', 'ossft-status');
    this.status.setAttribute('aria-live', 'polite');
    toolbar.appendChild(this.status);
    this.node.appendChild(toolbar);

    this.maskedLegend = el('span', 'ossft-legend-item ossft-legend-masked');
    this.maskedLegend.append(el('span', 'ossft-chip ossft-masked ossft-k-user', 'abc'), document.createTextNode('not trained'));
    this.maskedLegend.hidden = !this.state.showLossMask;
    this.node.appendChild(this.legend());
    this.body = el('div', 'ossft-body');
    this.node.appendChild(this.body);
    this.detail = el('div', 'ossft-detail', 'Hover a token to inspect it; click to pin.');
    this.detail.setAttribute('aria-live', 'polite');
    this.node.appendChild(this.detail);
    this.build();
  }

  /** Problems the schema cannot catch (parallel arrays of different lengths). */
  static problems(payload: HarmonyTokensPayload): string[] {
    const problems: string[] = [];
    payload.conversations.forEach((c, n) => {
      problems.push(...streamProblems(c.tokens, `conversations[${n}].tokens`));
      if (c.compare) problems.push(...streamProblems(c.compare, `conversations[${n}].compare`));
    });
    return problems;
  }

  get currentConversation(): HarmonyConversationView | undefined {
    return this.payload.conversations[this.conversation];
  }

  applySettings(settings: ViewSettings): void {
    this.node.classList.replace(`ossft-palette-${this.palette}`, `ossft-palette-${settings.palette}`);
    this.palette = settings.palette;
  }

  /** Call once the view is in the document so the panes measure their real width. */
  attach(): void {
    if (this.disposed) return;
    for (const pane of this.panes) pane.attach();
  }

  /** Call when the view leaves the document; `attach` resumes it. */
  detach(): void {
    for (const pane of this.panes) pane.detach();
  }

  /** Releases the panes for good; the view is not used again. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.disposePanes();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private disposePanes(): void {
    for (const pane of this.panes) pane.dispose();
    this.panes.length = 0;
  }

  /** Whether the loss mask shows by default for `conv`: a generated answer has no training targets to mark. */
  private maskFor(conv: HarmonyConversationView | undefined): boolean {
    return this.maskSetting && conv?.origin !== 'generation';
  }

  private setMask(on: boolean): void {
    this.maskBox.checked = on;
    this.maskedLegend.hidden = !on;
    this.setState({ showLossMask: on });
  }

  private setState(next: Partial<PaneState>): void {
    this.state = { ...this.state, ...next };
    for (const pane of this.panes) pane.setState(next);
  }

  private build(): void {
    this.disposePanes();
    this.body.replaceChildren();
    const conv = this.currentConversation;
    this.compareSelect.hidden = !conv?.compare;
    if (!conv) {
      this.body.appendChild(el('div', 'ossft-empty', 'No conversation in this payload.'));
      this.heatmapBox.disabled = true;
      return;
    }
    const name = conv.title ?? `Conversation ${this.conversation + 1}`;
    // `tokens` is the stream as trained or first answered; `compare` the one to set beside it
    // (typically the same prompt answered with the adapter).
    const tokens = new StreamSource(conv.tokens);
    const after = conv.compare ? new StreamSource(conv.compare) : null;
    const mode = after ? this.compare : 'off';
    const beforeLabel = conv.tokens.label ?? 'before';
    const afterLabel = conv.compare?.label ?? 'after';
    const columns: [string, TokenSource][] = [];
    if (mode === 'off' || !after) columns.push([conv.tokens.label ?? name, tokens]);
    else if (mode === 'side-by-side') columns.push([beforeLabel, tokens], [afterLabel, after]);
    else columns.push([`${beforeLabel} → ${afterLabel}`, diffSources(tokens, after)]);
    this.heatmapBox.disabled = !columns.some(([, source]) => source.hasLoss);
    this.body.classList.toggle('ossft-columns', columns.length > 1);
    const alignment = mode === 'side-by-side' && after ? alignSources(tokens, after) : null;
    columns.forEach(([label, source], index) => {
      const column = el('div', 'ossft-column');
      column.appendChild(el('div', 'ossft-column-label', `${label} · ${source.length.toLocaleString('en')} tokens`));
      const pane = new TokenPane(
        source,
        {
          label: `${label}: ${source.length} Harmony tokens. Arrow keys move, Enter pins.`,
          lineHeight: this.lineHeight,
          maxHeight: this.maxHeight,
          overscan: 6,
          onInspect: (description, pinned) => {
            this.detail.textContent =
              description === null ? 'Hover a token to inspect it; click to pin.' : `${pinned ? '📌 ' : ''}${description}`;
            this.detail.classList.toggle('ossft-detail-pinned', pinned);
          },
          hasLossMask: conv.origin !== 'generation',
          onHover: alignment ? (token) => this.showCounterpart(alignment, index, token) : undefined,
        },
        this.state,
      );
      column.appendChild(pane.node);
      this.body.appendChild(column);
      this.panes.push(pane);
    });
    if (this.node.isConnected) this.attach();
  }

  /** Highlights, in the other column, the token that pairs with `token` of column `from` (none if it has no pair). */
  private showCounterpart(alignment: Alignment, from: number, token: number | null): void {
    const other = this.panes[1 - from];
    if (!other) return;
    const map = from === 0 ? alignment.toAfter : alignment.toBefore;
    const pair = token === null ? -1 : map[token];
    other.highlight(pair >= 0 ? pair : null);
  }

  private async copy(what: 'text' | 'ids'): Promise<void> {
    const pane = this.panes[0];
    if (!pane) return;
    const order = pane.shownTokens;
    const pieces: string[] = new Array(order.length);
    for (let k = 0; k < order.length; k++) {
      pieces[k] = what === 'text' ? pane.source.text(order[k]) : String(pane.source.id(order[k]));
    }
    const text = what === 'text' ? pieces.join('') : `[${pieces.join(', ')}]`;
    try {
      await this.clipboard(text);
      this.status.textContent = `Copied ${order.length.toLocaleString('en')} tokens as ${what}.`;
    } catch (err) {
      this.status.textContent = `Could not copy: ${String(err)}`;
    }
  }

  private checkbox(cls: string, label: string, checked: boolean, onChange: (on: boolean) => void, swatch?: string): HTMLLabelElement {
    const wrapper = el('label', `ossft-check ${cls}`);
    const box = el('input');
    box.type = 'checkbox';
    box.checked = checked;
    box.addEventListener('change', () => onChange(box.checked));
    wrapper.appendChild(box);
    if (swatch) wrapper.appendChild(el('span', swatch));
    wrapper.appendChild(document.createTextNode(label));
    return wrapper;
  }

  private legend(): HTMLDivElement {
    const legend = el('div', 'ossft-legend');
    legend.setAttribute('aria-label', 'Colours');
    const keys: [string, string][] = [
      ['analysis', 'analysis'],
      ['commentary', 'commentary'],
      ['final', 'final'],
      ['system', 'system'],
      ['developer', 'developer'],
      ['user', 'user'],
      ['tool', 'tool'],
    ];
    for (const [key, label] of keys) {
      const item = el('span', 'ossft-legend-item');
      item.append(el('span', `ossft-swatch ossft-k-${key}`), document.createTextNode(label));
      legend.appendChild(item);
    }
    const special = el('span', 'ossft-legend-item');
    special.append(el('span', 'ossft-chip ossft-part-special ossft-k-none', '<|x|>'), document.createTextNode('special token'));
    legend.append(special, this.maskedLegend);
    return legend;
  }
}
