// IP addresses in text and on the wire (A and AAAA RDATA, RFC 1035 §3.4.1, RFC 3596 §2.2), parsed
// here without node:net so the DNS codec stays pure. Text forms follow RFC 4291 §2.2 (input) and
// RFC 5952 (output); a zone id ("%eth0") is accepted and ignored.

// 0-255 without leading zeros; four of them make the dotted quad.
const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** The 4 bytes of a dotted-quad IPv4 address, or null. */
export function parseIpv4(text: string): Buffer | null {
  const m = DOTTED_QUAD.exec(text);
  if (!m) return null;
  return Buffer.from([Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])]);
}

/** The 16 bytes of an IPv6 address (with "::", an embedded dotted quad, a zone id), or null. */
export function parseIpv6(text: string): Buffer | null {
  let s = text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (s.length < 2 || s.length > 45) return null;
  const groups: number[] = [];
  const parseGroups = (part: string, allowQuad: boolean): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    const items = part.split(':');
    for (let i = 0; i < items.length; i++) {
      const g = items[i]!;
      if (allowQuad && i === items.length - 1 && g.includes('.')) {
        const q = parseIpv4(g);
        if (!q) return null;
        out.push((q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!);
      } else if (HEX_GROUP.test(g)) {
        out.push(parseInt(g, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const halves = s.split('::');
  if (halves.length > 2) return null;
  if (halves.length === 1) {
    const all = parseGroups(s, true);
    if (!all || all.length !== 8) return null;
    groups.push(...all);
  } else {
    const head = parseGroups(halves[0]!, false);
    const tail = parseGroups(halves[1]!, true);
    if (!head || !tail || head.length + tail.length > 7) return null;
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  }
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(g, i * 2);
  });
  return out;
}

export function isIpv4(text: string): boolean {
  return parseIpv4(text) !== null;
}

export function isIpv6(text: string): boolean {
  return parseIpv6(text) !== null;
}

/** RFC 5952 text form: lower case, the longest run of two or more zero groups as "::". */
export function ipv6ToText(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return hex.slice(0, best).join(':') + '::' + hex.slice(best + bestLen).join(':');
}

/** For an encoder that must never emit a wrong record: throws a TypeError on bad input. */
export function ipv4ToBytes(address: string): Buffer {
  const b = parseIpv4(address);
  if (!b) throw new TypeError(`not an IPv4 address: ${address}`);
  return b;
}

export function ipv6ToBytes(address: string): Buffer {
  const b = parseIpv6(address);
  if (!b) throw new TypeError(`not an IPv6 address: ${address}`);
  return b;
}
