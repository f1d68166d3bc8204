// Product, group and application names the way administrators type them: "Windows 11 Enterprise",
// "Win 11 Ent", "Office 2021", "Server 2025 Standard" find the catalogue's "Windows 10/11
// Enterprise", "Office 2021", "Windows Server 2025 Standard". Every typed word must match a word
// of the name (a number exactly, a word as its beginning, common abbreviations expanded); among
// several matches the one with the fewest words left over wins, unless two tie — then the
// candidates are listed. Nothing close enough gives "did you mean" suggestions instead.
import { isGuid } from '../protocol/guid';
import type { Catalog } from './catalog';

export type NameKind = 'application' | 'group' | 'sku';

export interface NamedEntry {
  readonly kind: NameKind;
  readonly id: string;
  readonly name: string;
  /** Retail or preview: a volume product is what an administrator usually means. */
  readonly unlikely: boolean;
}

export type NameResolution =
  | { readonly found: NamedEntry }
  | { readonly ambiguous: readonly NamedEntry[] }
  | { readonly suggestions: readonly NamedEntry[] };

const ABBREVIATIONS: Readonly<Record<string, string>> = {
  win: 'windows',
  w: 'windows',
  ent: 'enterprise',
  std: 'standard',
  dc: 'datacenter',
  edu: 'education',
  srv: 'server',
  svr: 'server',
  ws: 'server',
  prof: 'professional',
  pp: 'plus',
  o: 'office',
  ltsb: 'ltsb',
};
/** Words that qualify without distinguishing: not counted as left over. */
const NOISE = new Set(['volume', 'edition', 'microsoft', 'kms']);

function words(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[\s/()\-,_:]+|(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])/)
    .filter((w) => w !== '');
}

function wordMatches(typed: string, word: string): boolean {
  if (/^\d+$/.test(typed)) return typed === word;
  return word === typed || (typed.length >= 2 && word.startsWith(typed));
}

/** How far `typed` is from matching `name`: undefined when a typed word matches nothing. */
function leftOver(typed: readonly string[], name: readonly string[]): number | undefined {
  const used = new Set<number>();
  for (const t of typed) {
    let i = name.findIndex((w, k) => !used.has(k) && w === t);
    if (i < 0) i = name.findIndex((w, k) => !used.has(k) && wordMatches(t, w));
    if (i < 0) return undefined;
    used.add(i);
  }
  return name.filter((w, k) => !used.has(k) && !NOISE.has(w)).length;
}

export function catalogEntries(catalog: Catalog, kinds: readonly NameKind[]): NamedEntry[] {
  const out: NamedEntry[] = [];
  for (const app of catalog.applications) {
    if (kinds.includes('application')) out.push({ kind: 'application', id: app.id, name: app.name, unlikely: false });
    for (const g of app.kmsGroups) {
      const unlikely = g.isRetail === true || g.isPreview === true;
      if (kinds.includes('group')) out.push({ kind: 'group', id: g.id, name: g.name, unlikely });
      if (kinds.includes('sku')) {
        for (const s of g.skus) out.push({ kind: 'sku', id: s.id, name: s.name, unlikely: unlikely || /\b(preview|beta)\b/i.test(s.name) });
      }
    }
  }
  return out;
}

/** Resolves what was typed among the catalogue's entries of `kinds`. */
export function resolveName(catalog: Catalog, typed: string, kinds: readonly NameKind[]): NameResolution {
  const entries = catalogEntries(catalog, kinds);
  const text = typed.trim();
  const lower = text.toLowerCase();
  if (isGuid(text)) {
    const byId = entries.find((e) => e.id === lower);
    return byId ? { found: byId } : { suggestions: [] };
  }
  const exact = entries.filter((e) => e.name.toLowerCase() === lower);
  if (exact.length === 1) return { found: exact[0]! };
  if (exact.length > 1) return { ambiguous: exact };

  const typedWords = words(text).map((w) => ABBREVIATIONS[w] ?? w);
  if (typedWords.length === 0) return { suggestions: [] };
  const scored: { e: NamedEntry; score: number }[] = [];
  for (const e of entries) {
    const left = leftOver(typedWords, words(e.name));
    // A retail or preview product counts as two words further away.
    if (left !== undefined) scored.push({ e, score: left + (e.unlikely ? 2 : 0) });
  }
  if (scored.length === 0) return { suggestions: fuzzy(typedWords, entries) };
  scored.sort((a, b) => a.score - b.score);
  const best = scored[0]!;
  const tied = scored.filter((s) => s.score === best.score);
  if (tied.length === 1 && (kinds.length > 1 || kinds[0] !== 'application' || scored.length === 1)) return { found: best.e };
  return { ambiguous: (tied.length > 1 ? tied : scored).map((s) => s.e) };
}

/** Entries whose words are each within a typo of the typed words: candidates, never a choice. */
function fuzzy(typed: readonly string[], entries: readonly NamedEntry[]): NamedEntry[] {
  const close = (t: string, w: string): boolean => {
    if (wordMatches(t, w)) return true;
    if (t.length < 4 || /^\d+$/.test(t)) return false;
    return typo(t, w.slice(0, t.length + 1)) || typo(t, w);
  };
  const scored = entries
    .map((e) => {
      const ws = words(e.name);
      return { e, hits: typed.filter((t) => ws.some((w) => close(t, w))).length, unlikely: e.unlikely };
    })
    .filter((s) => s.hits > 0 && s.hits >= typed.length - 1)
    .sort((a, b) => b.hits - a.hits || Number(a.unlikely) - Number(b.unlikely) || a.e.name.length - b.e.name.length);
  return scored.slice(0, 3).map((s) => s.e);
}

/** At most one edit (insert, delete, replace, swap) apart. */
function typo(a: string, b: string): boolean {
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (a.slice(i + 1) === b.slice(i + 1)) return true; // replace
  if (a.slice(i + 1) === b.slice(i)) return true; // delete from a
  if (a.slice(i) === b.slice(i + 1)) return true; // insert into a
  return a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2); // swap
}

/** One line for a name that did not resolve: the candidates, or what it might have meant. */
export function explainUnresolved(typed: string, r: NameResolution, what: string): string {
  if ('ambiguous' in r) {
    const shown = r.ambiguous
      .slice(0, 8)
      .map((e) => `"${e.name}"`)
      .join(', ');
    return `"${typed}" matches ${r.ambiguous.length} names: ${shown}${r.ambiguous.length > 8 ? ', …' : ''}; give more of the name`;
  }
  if ('suggestions' in r && r.suggestions.length > 0) {
    return `no ${what} named like "${typed}" (did you mean ${r.suggestions.map((e) => `"${e.name}"`).join(' or ')}?)`;
  }
  return `no ${what} named like "${typed}" in the catalogue`;
}
