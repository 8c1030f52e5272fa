/**
 * Shorthand for building DOM without markup strings: text goes in as textContent only. A class name
 * of '' is still written (as `class=""`); leave it out for no class attribute at all.
 */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className !== undefined) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
