import { HarmonyChannel, TokenSource, colourKey, displayText } from './model';
import { Layout, Measures, layoutLines, lineOf, measure } from './layout';

export interface PaneState {
  channels: ReadonlySet<HarmonyChannel>;
  showLossMask: boolean;
  showLossHeatmap: boolean;
}

export interface PaneOptions {
  /** Accessible name of the token list, e.g. "Conversation 1, with adapter". */
  label: string;
  lineHeight: number;
  /** Tallest the pane grows before it scrolls, in px. */
  maxHeight: number;
  /** Lines drawn above and below the visible ones so that small scrolls find them ready. */
  overscan: number;
  /** Called with a token's description when the pointer or the keyboard lands on it (null: left). */
  onInspect?: (description: string | null, pinned: boolean) => void;
}

// Used when the pane is not laid out yet (hidden output, tests): a typical notebook width and the
// width of a 12px monospace column.
const FALLBACK_WIDTH = 800;
const FALLBACK_CHAR_WIDTH = 7.25;
// Horizontal padding, borders and gap of a chip; style/harmony.css must agree.
const CHIP_EXTRA = 10;
const PANE_PADDING = 8;

// Viridis stops: perceptually ordered and readable for colour-blind people.
const HEAT = ['#440154', '#3b528b', '#21918c', '#5ec962', '#fde725'];

let paneCount = 0;

/**
 * A virtualized token list: a spacer gives the scroller the full height of all lines, and only the
 * lines in view (plus overscan) exist in the DOM. Token text goes in with textContent only.
 */
export class TokenPane {
  readonly node: HTMLDivElement;
  private readonly spacer: HTMLDivElement;
  private readonly window: HTMLDivElement;
  private readonly measures: Measures;
  private layout!: Layout;
  private state: PaneState;
  private charWidth = 0;
  private width = 0;
  private first = -1;
  private last = -1;
  private lossMax = 0;
  private pinned: number | null = null;
  private active = 0;
  private readonly uid = `ossft-pane-${++paneCount}`;
  private resizeObserver: ResizeObserver | null = null;

  constructor(
    readonly source: TokenSource,
    private readonly options: PaneOptions,
    state: PaneState,
  ) {
    this.state = state;
    this.measures = measure(source);
    for (let i = 0; i < source.length; i++) {
      const loss = source.loss(i);
      if (loss !== null && Number.isFinite(loss) && loss > this.lossMax) this.lossMax = loss;
    }

    this.node = document.createElement('div');
    this.node.className = 'ossft-pane';
    this.node.tabIndex = 0;
    this.node.setAttribute('role', 'listbox');
    this.node.setAttribute('aria-label', options.label);
    this.node.style.setProperty('--ossft-line', `${options.lineHeight}px`);
    this.spacer = document.createElement('div');
    this.spacer.className = 'ossft-spacer';
    this.window = document.createElement('div');
    this.window.className = 'ossft-window';
    this.window.setAttribute('role', 'presentation');
    this.spacer.appendChild(this.window);
    this.node.appendChild(this.spacer);

    this.node.addEventListener('scroll', () => this.render());
    this.window.addEventListener('mouseover', (event) => {
      const i = this.tokenAt(event.target);
      if (i !== null && this.pinned === null) this.inspect(i, false);
    });
    this.window.addEventListener('mouseleave', () => {
      if (this.pinned === null) this.options.onInspect?.(null, false);
    });
    this.window.addEventListener('click', (event) => {
      const i = this.tokenAt(event.target);
      if (i === null) return;
      this.active = this.positionOf(i);
      this.togglePin(i);
    });
    this.node.addEventListener('keydown', (event) => this.onKey(event));
    this.relayout();
  }

  /** Chips in the DOM right now; the virtualization tests watch it. */
  get renderedChips(): number {
    return this.window.querySelectorAll('.ossft-chip').length;
  }

  get lineCount(): number {
    return this.layout.lineCount;
  }

  /** Tokens shown after the channel filter, in order. */
  get shownTokens(): Int32Array {
    return this.layout.order;
  }

  get pinnedToken(): number | null {
    return this.pinned;
  }

  setState(next: Partial<PaneState>): void {
    const refilter = next.channels !== undefined && next.channels !== this.state.channels;
    this.state = { ...this.state, ...next };
    if (refilter) this.relayout();
    else this.render(true);
  }

  /** Starts following the pane's width; call once the node is in the document. */
  attach(): void {
    // Measured again now that the chip font applies.
    this.charWidth = 0;
    if (this.resizeObserver || typeof ResizeObserver === 'undefined') {
      this.relayout();
      return;
    }
    this.resizeObserver = new ResizeObserver(() => {
      if (Math.abs(this.measureWidth() - this.width) > 1) this.relayout();
    });
    this.resizeObserver.observe(this.node);
    this.relayout();
  }

  dispose(): void {
    this.resizeObserver?.disconnect();
    this.resizeObserver = null;
  }

  /** Lays all shown tokens out in lines again, keeping the first visible token in view. */
  relayout(): void {
    const anchor = this.layout && this.layout.lineCount > 0 ? this.layout.order[this.layout.lineStarts[this.firstVisibleLine()]] : -1;
    if (!this.charWidth) this.charWidth = this.measureCharWidth();
    this.width = this.measureWidth();
    const channels = this.state.channels;
    this.layout = layoutLines(this.source, this.measures, (i) => channels.has(this.source.channel(i)), {
      width: this.width - PANE_PADDING * 2,
      charWidth: this.charWidth,
      chipExtra: CHIP_EXTRA,
    });
    const lh = this.options.lineHeight;
    const total = this.layout.lineCount * lh + PANE_PADDING * 2;
    this.spacer.style.height = `${total}px`;
    this.node.style.height = `${Math.min(total, this.options.maxHeight)}px`;
    this.active = Math.min(this.active, Math.max(0, this.layout.order.length - 1));
    if (anchor >= 0) {
      const k = this.positionOf(anchor);
      if (k >= 0) this.node.scrollTop = lineOf(this.layout, k) * lh;
    }
    this.render(true);
  }

  /** Draws the lines in view; does nothing when the same lines are already there. */
  render(force = false): void {
    const lh = this.options.lineHeight;
    const viewport = this.node.clientHeight || Math.min(this.options.maxHeight, this.layout.lineCount * lh + PANE_PADDING * 2);
    const top = Math.max(0, this.node.scrollTop - PANE_PADDING);
    const first = Math.max(0, Math.floor(top / lh) - this.options.overscan);
    const last = Math.min(this.layout.lineCount, Math.ceil((top + viewport) / lh) + this.options.overscan);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;

    const lines = document.createDocumentFragment();
    for (let line = first; line < last; line++) {
      const row = document.createElement('div');
      row.className = 'ossft-line';
      row.setAttribute('role', 'presentation');
      const end = this.layout.lineStarts[line + 1];
      for (let k = this.layout.lineStarts[line]; k < end; k++) row.appendChild(this.chip(k));
      lines.appendChild(row);
    }
    this.window.style.transform = `translateY(${first * lh}px)`;
    this.window.replaceChildren(lines);
    const activeToken = this.layout.order[this.active];
    if (activeToken !== undefined) this.node.setAttribute('aria-activedescendant', `${this.uid}-${activeToken}`);
  }

  /** Words for the hover card and for screen readers. */
  describe(i: number): string {
    const s = this.source;
    const parts = [
      `token ${s.origin(i) + 1}`,
      `id ${s.id(i)}`,
      `“${displayText(s.text(i))}”`,
      `role ${s.role(i)}`,
      `channel ${s.channel(i)}`,
      `part ${s.part(i)}`,
      s.trained(i) ? 'trained' : 'not trained (masked)',
    ];
    const loss = s.loss(i);
    if (loss !== null) parts.push(`loss ${loss.toFixed(3)}`);
    const change = s.change(i);
    if (change !== 'same') parts.push(change === 'added' ? 'only after' : 'only before');
    return parts.join(' · ');
  }

  scrollToPosition(k: number): void {
    const line = lineOf(this.layout, k);
    const lh = this.options.lineHeight;
    const viewport = this.node.clientHeight || this.options.maxHeight;
    const top = line * lh;
    if (top < this.node.scrollTop) this.node.scrollTop = top;
    else if (top + lh > this.node.scrollTop + viewport) this.node.scrollTop = top + lh - viewport + PANE_PADDING * 2;
    this.render();
  }

  private chip(k: number): HTMLSpanElement {
    const i = this.layout.order[k];
    const s = this.source;
    const role = s.role(i);
    const channel = s.channel(i);
    const part = s.part(i);
    const chip = document.createElement('span');
    let cls = `ossft-chip ossft-k-${colourKey(role, channel)} ossft-part-${part}`;
    if (this.state.showLossMask && !s.trained(i)) cls += ' ossft-masked';
    const change = s.change(i);
    if (change !== 'same') cls += ` ossft-${change}`;
    if (i === this.pinned) cls += ' ossft-pinned';
    if (k === this.active) cls += ' ossft-active';
    if (this.state.showLossHeatmap && this.lossMax > 0) {
      const loss = s.loss(i);
      if (loss !== null) {
        cls += ' ossft-heat';
        const step = Math.min(HEAT.length - 1, Math.floor((loss / this.lossMax) * (HEAT.length - 1) + 0.5));
        chip.style.setProperty('--ossft-heat', HEAT[Math.max(0, step)]);
        chip.style.setProperty('--ossft-heat-text', step >= 3 ? '#000' : '#fff');
      }
    }
    chip.className = cls;
    chip.dataset.i = String(i);
    chip.setAttribute('role', 'option');
    // Only the token the keyboard is on needs an id and a full accessible name; naming every drawn
    // chip would double the cost of a scroll jump for nothing a screen reader reads.
    if (k === this.active || i === this.pinned) {
      chip.id = `${this.uid}-${i}`;
      chip.setAttribute('aria-posinset', String(k + 1));
      chip.setAttribute('aria-setsize', String(this.layout.order.length));
      chip.setAttribute('aria-label', this.describe(i));
      chip.setAttribute('aria-selected', String(i === this.pinned));
    }
    chip.textContent = displayText(s.text(i));
    return chip;
  }

  private inspect(i: number, pinned: boolean): void {
    this.options.onInspect?.(this.describe(i), pinned);
  }

  private togglePin(i: number): void {
    this.pinned = this.pinned === i ? null : i;
    if (this.pinned === null) this.options.onInspect?.(this.describe(i), false);
    else this.inspect(i, true);
    this.render(true);
  }

  private tokenAt(target: EventTarget | null): number | null {
    const chip = (target as HTMLElement | null)?.closest?.('.ossft-chip') as HTMLElement | null;
    if (!chip || chip.dataset.i === undefined) return null;
    return Number(chip.dataset.i);
  }

  private positionOf(i: number): number {
    // order is ascending, so a binary search finds a token's position.
    const order = this.layout.order;
    let lo = 0;
    let hi = order.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (order[mid] === i) return mid;
      if (order[mid] < i) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private firstVisibleLine(): number {
    return Math.min(Math.max(0, this.layout.lineCount - 1), Math.floor(Math.max(0, this.node.scrollTop - PANE_PADDING) / this.options.lineHeight));
  }

  private onKey(event: KeyboardEvent): void {
    const count = this.layout.order.length;
    if (count === 0) return;
    const line = lineOf(this.layout, this.active);
    const column = this.active - this.layout.lineStarts[line];
    const screen = Math.max(1, Math.floor((this.node.clientHeight || this.options.maxHeight) / this.options.lineHeight) - 1);
    const toLine = (target: number) => {
      const l = Math.max(0, Math.min(this.layout.lineCount - 1, target));
      return Math.min(this.layout.lineStarts[l] + column, this.layout.lineStarts[l + 1] - 1);
    };
    let next = this.active;
    switch (event.key) {
      case 'ArrowRight': next = this.active + 1; break;
      case 'ArrowLeft': next = this.active - 1; break;
      case 'ArrowDown': next = toLine(line + 1); break;
      case 'ArrowUp': next = toLine(line - 1); break;
      case 'PageDown': next = toLine(line + screen); break;
      case 'PageUp': next = toLine(line - screen); break;
      case 'Home': next = 0; break;
      case 'End': next = count - 1; break;
      case 'Enter':
      case ' ':
        event.preventDefault();
        this.togglePin(this.layout.order[this.active]);
        return;
      case 'Escape':
        if (this.pinned !== null) {
          this.pinned = null;
          this.options.onInspect?.(null, false);
          this.render(true);
        }
        return;
      default:
        return;
    }
    event.preventDefault();
    this.active = Math.max(0, Math.min(count - 1, next));
    this.scrollToPosition(this.active);
    this.render(true);
    if (this.pinned === null) this.inspect(this.layout.order[this.active], false);
  }

  private measureWidth(): number {
    return this.node.clientWidth || FALLBACK_WIDTH;
  }

  private measureCharWidth(): number {
    const probe = document.createElement('span');
    probe.className = 'ossft-chip ossft-probe';
    probe.textContent = 'M'.repeat(40);
    this.node.appendChild(probe);
    const chip = probe.getBoundingClientRect().width;
    probe.remove();
    return chip > 0 ? (chip - CHIP_EXTRA + 2) / 40 : FALLBACK_CHAR_WIDTH;
  }
}
