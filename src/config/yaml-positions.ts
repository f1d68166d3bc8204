// Line numbers of configuration fields in the parsed YAML document, so that every error line
// points at the key or value an administrator has to edit.
import { isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

interface Located {
  readonly key?: Node;
  readonly value?: Node | null;
}

function locate(doc: Document, path: readonly (string | number)[]): Located | undefined {
  let current: Located = { value: doc.contents as Node | null };
  for (const seg of path) {
    const node = current.value;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return undefined;
      current = { key: pair.key as Node, value: pair.value as Node | null };
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return undefined;
      current = { value: item as Node | null };
    } else {
      return undefined;
    }
  }
  return current;
}

function lineOf(node: Node | null | undefined, lines: LineCounter): number | undefined {
  const start = node?.range?.[0];
  return start === undefined ? undefined : lines.linePos(start).line;
}

/**
 * The 1-based line of `path` in the document: its key's, or a list entry's own line. A path the file does not contain (a default, a
 * missing required field) falls back to the first related field present, then to the nearest enclosing field.
 */
export function lineOfPath(
  doc: Document,
  lines: LineCounter,
  path: readonly (string | number)[],
  related: readonly (readonly (string | number)[])[],
): number {
  const here = locate(doc, path);
  if (here) {
    // The key's line even for a value: a block list or mapping starts on the line after its key.
    const line = lineOf(here.key, lines) ?? lineOf(here.value, lines);
    if (line !== undefined) return line;
  }
  for (const other of related) {
    const found = locate(doc, other);
    const line = found && (lineOf(found.key, lines) ?? lineOf(found.value, lines));
    if (line !== undefined) return line;
  }
  for (let n = path.length - 1; n >= 0; n--) {
    const up = locate(doc, path.slice(0, n));
    const line = up && (lineOf(up.key, lines) ?? lineOf(up.value, lines));
    if (line !== undefined) return line;
  }
  return 1;
}
