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
  /** Whether the tokens' trained flags mean anything (a training row) or not (generated text); default true. */
  hasLossMask?: boolean;
  /** Called with the token under the pointer as it changes (null: the pointer left the tokens). */
  onHover?: (token: number | null) => void;
}

// Used when the pane is not laid out yet (hidden output, tests): a typical notebook width and the
// width of a 12px monospace column.
const FALLBACK_WIDTH = 800;
const FALLBACK_CHAR_WIDTH = 7.25;
// Horizontal padding and gap of a chip; style/index.css must agree.
const CHIP_EXTRA = 10;
const PANE_PADDING = 8;

// Viridis stops: perceptually ordered and readable for colour-blind people.
const HEAT = ['#440154', '#3b528b', '#21918c', '#5ec962', '#fde725'];

let paneCount = 0;

/** A chip element with what it shows now, so a redraw writes only what changed. */
interface Chip {
  node: HTMLSpanElement;
  text: Text;
  /** Token shown, -1 for a fresh chip. */
  token: number;
  cls: string;
  shown: string;
  heat: string;
  /** Whether it carries the id and the full ARIA description (active or pinned token). */
  named: boolean;
}

interface DrawnLine {
  node: HTMLDivElement;
  line: number;
  chips: Chip[];
}

// Spares above these are dropped: enough for a pane that grows a little, not a leak.
const MAX_SPARE_LINES = 64;
const MAX_SPARE_CHIPS = 4096;

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
  private shift = -1;
  private activeId = '';
  /** The drawn lines, in document order. */
  private drawn: DrawnLine[] = [];
  /** Lines and chips out of the document, kept for the next render instead of being rebuilt. */
  private readonly spareLines: DrawnLine[] = [];
  private readonly spareChips: Chip[] = [];
  /** The chip under the pointer, so a render that gives it another token updates the card. */
  private hovered: Chip | null = null;
  /** The token drawn highlighted: the one under the pointer, or its counterpart in another pane. */
  private highlighted: number | null = null;
  private readonly uid = `ossft-pane-${++paneCount}`;
  private resizeObserver: ResizeObserver | null = null;
  private disposed = false;

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
      const chip = this.chipAt(event.target);
      this.hovered = chip;
      if (chip) this.hover(chip);
    });
    this.window.addEventListener('mouseleave', () => {
      this.hovered = null;
      if (this.pinned === null) this.options.onInspect?.(null, false);
      this.highlight(null);
      this.options.onHover?.(null);
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

  get highlightedToken(): number | null {
    return this.highlighted;
  }

  /** Draws token `i` highlighted (null: none), e.g. the counterpart of a token hovered in another pane. */
  highlight(i: number | null): void {
    if (i === this.highlighted) return;
    this.highlighted = i;
    this.render(true);
  }

  setState(next: Partial<PaneState>): void {
    const refilter = next.channels !== undefined && next.channels !== this.state.channels;
    this.state = { ...this.state, ...next };
    if (refilter) this.relayout();
    else this.render(true);
  }

  /** Starts following the pane's width; call once the node is in the document, and again after `detach`. */
  attach(): void {
    if (this.disposed) return;
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

  /** Stops following the pane's width while it is out of the document; `attach` resumes. */
  detach(): void {
    this.resizeObserver?.disconnect();
    this.resizeObserver = null;
  }

  /** Stops for good: the pane is not attached again. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.detach();
    this.hovered = null;
  }

  get isDisposed(): boolean {
    return this.disposed;
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

  /**
   * Draws the lines in view; does nothing when the same lines are already there. Line and chip
   * elements are reused: lines still in view stay as they are, the others take the tokens of the
   * lines that came into view, and a chip's class, text and attributes are written only when they
   * change. Every DOM read (size, scroll position) comes before the first write.
   */
  render(force = false): void {
    const lh = this.options.lineHeight;
    const viewport = this.node.clientHeight || Math.min(this.options.maxHeight, this.layout.lineCount * lh + PANE_PADDING * 2);
    const top = Math.max(0, this.node.scrollTop - PANE_PADDING);
    const first = Math.max(0, Math.floor(top / lh) - this.options.overscan);
    const last = Math.min(this.layout.lineCount, Math.ceil((top + viewport) / lh) + this.options.overscan);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    const hoveredToken = this.hovered?.token;

    const kept = new Map<number, DrawnLine>();
    const free: DrawnLine[] = [];
    for (const line of this.drawn) {
      if (line.line >= first && line.line < last) kept.set(line.line, line);
      else free.push(line);
    }
    const next: DrawnLine[] = [];
    const before: HTMLDivElement[] = [];
    const after: HTMLDivElement[] = [];
    let anchor: DrawnLine | null = null;
    let reused = 0;
    for (let line = first; line < last; line++) {
      let drawn = kept.get(line);
      if (drawn) {
        anchor ??= drawn;
        if (force) this.fill(drawn, line);
      } else {
        drawn = reused < free.length ? free[reused++] : (this.spareLines.pop() ?? this.newLine());
        this.fill(drawn, line);
        (anchor ? after : before).push(drawn.node);
      }
      next.push(drawn);
    }
    for (let k = reused; k < free.length; k++) {
      free[k].node.remove();
      if (this.hovered && free[k].chips.includes(this.hovered)) this.hovered = null;
      if (this.spareLines.length < MAX_SPARE_LINES) this.spareLines.push(free[k]);
    }
    if (anchor) {
      // Lines still in view keep their place; the refilled ones go above or below them.
      if (before.length) anchor.node.before(...before);
      if (after.length) this.window.append(...after);
    } else {
      // A jump: the reused lines are already in order in the document, so only new ones go in.
      const fresh = before.filter((node) => node.parentNode !== this.window);
      if (fresh.length) this.window.append(...fresh);
    }
    this.drawn = next;

    if (first !== this.shift) {
      this.window.style.transform = `translateY(${first * lh}px)`;
      this.shift = first;
    }
    const activeToken = this.layout.order[this.active];
    const activeId = activeToken === undefined ? '' : `${this.uid}-${activeToken}`;
    if (activeId && activeId !== this.activeId) this.node.setAttribute('aria-activedescendant', activeId);
    this.activeId = activeId;
    // The pointer has not moved but the chip under it shows another token now; the browser sends
    // no mouseover for that, since the element under the pointer is the same.
    const hovered = this.hovered;
    if (hovered && hovered.token !== hoveredToken && hovered.node.isConnected) this.hover(hovered);
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
    ];
    if (this.options.hasLossMask !== false) parts.push(s.trained(i) ? 'trained' : 'not trained (masked)');
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

  private newLine(): DrawnLine {
    const node = document.createElement('div');
    node.className = 'ossft-line';
    node.setAttribute('role', 'presentation');
    return { node, line: -1, chips: [] };
  }

  private newChip(): Chip {
    const node = document.createElement('span');
    node.setAttribute('role', 'option');
    // Token text only ever goes into this Text node's data: never parsed as HTML.
    const text = document.createTextNode('');
    node.appendChild(text);
    return { node, text, token: -1, cls: '', shown: '', heat: '', named: false };
  }

  /** Shows line `line` of the layout in `drawn`, reusing its chips and adding or putting away the difference. */
  private fill(drawn: DrawnLine, line: number): void {
    drawn.line = line;
    const start = this.layout.lineStarts[line];
    const count = this.layout.lineStarts[line + 1] - start;
    const chips = drawn.chips;
    let added: HTMLSpanElement[] | null = null;
    for (let j = 0; j < count; j++) {
      let chip = chips[j];
      if (!chip) {
        chip = this.spareChips.pop() ?? this.newChip();
        chips.push(chip);
        (added ??= []).push(chip.node);
      }
      this.draw(chip, start + j);
    }
    while (chips.length > count) {
      const chip = chips.pop()!;
      chip.node.remove();
      // Out of the document it is under no pointer, whatever it shows next.
      if (chip === this.hovered) this.hovered = null;
      if (this.spareChips.length < MAX_SPARE_CHIPS) this.spareChips.push(chip);
    }
    if (added) drawn.node.append(...added);
  }

  /** Makes `chip` show the token at position k, writing only what differs from what it shows. */
  private draw(chip: Chip, k: number): void {
    const i = this.layout.order[k];
    const s = this.source;
    const node = chip.node;
    let cls = `ossft-chip ossft-k-${colourKey(s.role(i), s.channel(i))} ossft-part-${s.part(i)}`;
    if (this.state.showLossMask && !s.trained(i)) cls += ' ossft-masked';
    const change = s.change(i);
    if (change !== 'same') cls += ` ossft-${change}`;
    if (i === this.pinned) cls += ' ossft-pinned';
    if (i === this.highlighted) cls += ' ossft-hover';
    if (k === this.active) cls += ' ossft-active';
    let heat = '';
    if (this.state.showLossHeatmap && this.lossMax > 0) {
      const loss = s.loss(i);
      if (loss !== null) {
        cls += ' ossft-heat';
        heat = HEAT[Math.max(0, Math.min(HEAT.length - 1, Math.floor((loss / this.lossMax) * (HEAT.length - 1) + 0.5)))];
      }
    }
    if (cls !== chip.cls) {
      node.className = cls;
      chip.cls = cls;
    }
    if (heat !== chip.heat) {
      if (heat) {
        node.style.setProperty('--ossft-heat', heat);
        node.style.setProperty('--ossft-heat-text', HEAT.indexOf(heat) >= 3 ? '#000' : '#fff');
      } else {
        node.style.removeProperty('--ossft-heat');
        node.style.removeProperty('--ossft-heat-text');
      }
      chip.heat = heat;
    }
    if (i !== chip.token) {
      node.dataset.i = String(i);
      // The tooltip of the token the chip showed before would be wrong now; hover writes it again.
      if (chip.token >= 0) node.removeAttribute('title');
      chip.token = i;
      const shown = displayText(s.text(i));
      if (shown !== chip.shown) {
        chip.text.data = shown;
        chip.shown = shown;
      }
    }
    // Only the token the keyboard is on (and a pinned one) needs an id and a full accessible name;
    // naming every drawn chip would double the cost of a scroll jump for nothing a screen reader reads.
    const named = k === this.active || i === this.pinned;
    if (named) {
      node.id = `${this.uid}-${i}`;
      node.setAttribute('aria-posinset', String(k + 1));
      node.setAttribute('aria-setsize', String(this.layout.order.length));
      node.setAttribute('aria-label', this.describe(i));
      node.setAttribute('aria-selected', String(i === this.pinned));
    } else if (chip.named) {
      node.removeAttribute('id');
      for (const name of ['aria-posinset', 'aria-setsize', 'aria-label', 'aria-selected']) node.removeAttribute(name);
    }
    chip.named = named;
  }

  /**
   * The pointer is on `chip`: its token is highlighted (here and, through onHover, its counterpart
   * elsewhere), and its description shows as a tooltip by the pointer as well as in the card.
   */
  private hover(chip: Chip): void {
    const i = chip.token;
    chip.node.title = this.describe(i);
    if (this.pinned === null) this.inspect(i, false);
    if (i === this.highlighted) return;
    this.highlight(i);
    this.options.onHover?.(i);
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

  private chipAt(target: EventTarget | null): Chip | null {
    const node = (target as HTMLElement | null)?.closest?.('.ossft-chip');
    if (!node) return null;
    for (const line of this.drawn) {
      if (line.node !== node.parentNode) continue;
      return line.chips.find((chip) => chip.node === node) ?? null;
    }
    return null;
  }

  private tokenAt(target: EventTarget | null): number | null {
    return this.chipAt(target)?.token ?? null;
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
    return Math.min(
      Math.max(0, this.layout.lineCount - 1),
      Math.floor(Math.max(0, this.node.scrollTop - PANE_PADDING) / this.options.lineHeight),
    );
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
      case 'ArrowRight':
        next = this.active + 1;
        break;
      case 'ArrowLeft':
        next = this.active - 1;
        break;
      case 'ArrowDown':
        next = toLine(line + 1);
        break;
      case 'ArrowUp':
        next = toLine(line - 1);
        break;
      case 'PageDown':
        next = toLine(line + screen);
        break;
      case 'PageUp':
        next = toLine(line - screen);
        break;
      case 'Home':
        next = 0;
        break;
      case 'End':
        next = count - 1;
        break;
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
