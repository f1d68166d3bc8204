// The open connections, grouped by client address group, each group ordered by last progress
// (least recent first) and by the time its connections were opened, plus how many groups hold how
// many connections and the order in which all of them were opened. Every operation is O(1), so choosing whom to evict when the host is
// full never scans the table.

export interface Slot {
  /** The address group (address-group.ts) the connection counts against. */
  readonly group: string;
  /** When the connection last made progress (or was accepted), ms since the epoch. */
  readonly lastProgressAt: number;
  /** When the connection was accepted, ms since the epoch. */
  readonly openedAt: number;
}

export class ConnectionTable<C extends Slot> {
  /** Per group, connections in the order of their last progress: first = longest without. */
  private readonly groups = new Map<string, Map<C, true>>();
  /** Group size → the groups of that size. */
  private readonly bySize = new Map<number, Set<string>>();
  /** Every connection in the order it was opened: first = open longest. */
  private readonly byAge = new Map<C, true>();
  /** Per group, its connections in the order they were opened. */
  private readonly groupAges = new Map<string, Set<C>>();
  private largestSize = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  sizeOf(group: string): number {
    return this.groups.get(group)?.size ?? 0;
  }

  add(c: C): void {
    let members = this.groups.get(c.group);
    if (!members) {
      members = new Map();
      this.groups.set(c.group, members);
    }
    if (members.has(c)) return;
    this.resize(c.group, members.size, members.size + 1);
    members.set(c, true);
    this.byAge.set(c, true);
    let ages = this.groupAges.get(c.group);
    if (!ages) {
      ages = new Set();
      this.groupAges.set(c.group, ages);
    }
    ages.add(c);
    this.count++;
  }

  /** Returns false when `c` was not (or no longer) in the table. */
  remove(c: C): boolean {
    const members = this.groups.get(c.group);
    if (!members?.delete(c)) return false;
    this.byAge.delete(c);
    this.count--;
    this.resize(c.group, members.size + 1, members.size);
    if (members.size === 0) {
      this.groups.delete(c.group);
      this.groupAges.delete(c.group);
    } else {
      this.groupAges.get(c.group)!.delete(c);
    }
    return true;
  }

  /** `c` made progress: it moves to the end of its group's order. */
  touch(c: C): void {
    const members = this.groups.get(c.group);
    // A group of one (a client machine and its one connection, the usual case) has no order to
    // change; moving an entry to a Map's end leaves a hole that the Map's rehash collects later.
    if (members === undefined || (members.size === 1 && members.has(c))) return;
    if (members.delete(c)) members.set(c, true);
  }

  /** The connection of `group` that has gone longest without progress. */
  oldestOf(group: string): C | undefined {
    const members = this.groups.get(group);
    return members ? members.keys().next().value : undefined;
  }

  /** The connection of `group` open longest, whatever its progress. */
  oldestOpenOf(group: string): C | undefined {
    return this.groupAges.get(group)?.values().next().value;
  }

  /** The connection open longest, whatever its group and progress. */
  oldest(): C | undefined {
    return this.byAge.keys().next().value;
  }

  /** One of the groups holding the most connections. */
  largestGroup(): string | undefined {
    return this.bySize.get(this.largestSize)?.values().next().value;
  }

  get largestGroupSize(): number {
    return this.largestSize;
  }

  private resize(group: string, from: number, to: number): void {
    if (from > 0) {
      const set = this.bySize.get(from)!;
      set.delete(group);
      if (set.size === 0) this.bySize.delete(from);
    }
    if (to > 0) {
      let set = this.bySize.get(to);
      if (!set) {
        set = new Set();
        this.bySize.set(to, set);
      }
      set.add(group);
    }
    // Sizes change by one, so the largest size moves by at most one.
    if (to > this.largestSize) this.largestSize = to;
    else if (from === this.largestSize && !this.bySize.has(from)) this.largestSize = to;
  }
}
