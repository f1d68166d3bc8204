// A client that opens a connection per activation sends the same first bind every time, byte for
// byte from n_context_elem on. Its judgement and its bind_ack are then the same too, apart from the
// fields that are the client's own or the association's (PROTOCOL.md §2.6): pfc_flags (echoed),
// call_id, the two frag sizes and assoc_group_id. So the bind_ack of a few recent offers is kept and
// patched instead of decoding the GUIDs, judging the items and encoding the answer again.
import { negotiateFragSize } from './bind';
import type { AcceptedContext } from './presentation-context';

/** Where the per-call fields sit, the same in bind and bind_ack (§2.1, §2.4, §2.6). */
const FLAGS_OFFSET = 3;
const CALL_ID_OFFSET = 12;
const MAX_XMIT_FRAG_OFFSET = 16;
const MAX_RECV_FRAG_OFFSET = 18;
const ASSOC_GROUP_OFFSET = 20;
/** A bind's context list (n_context_elem onward) starts after these fixed fields. */
const OFFER_OFFSET = 24;
/** Kinds of clients seen at once (each Windows and Office generation has its own offer). */
const MAX_ENTRIES = 8;

/** What the answer depends on besides the offer: the host's policy and its listening port. */
export interface FirstBindPolicy {
  readonly ndr64: boolean;
  readonly btfn: boolean;
  readonly maxContexts?: number;
  readonly secondaryAddress: string;
}

interface Entry extends FirstBindPolicy {
  readonly offer: Buffer;
  readonly accepted: readonly AcceptedContext[];
  readonly ack: Buffer;
}

/** A remembered answer: the contexts the offer's items became, and the bind_ack to patch. */
export type FirstBindAnswer = Pick<Entry, 'accepted' | 'ack'>;

function samePolicy(e: FirstBindPolicy, p: FirstBindPolicy): boolean {
  return e.ndr64 === p.ndr64 && e.btfn === p.btfn && e.maxContexts === p.maxContexts && e.secondaryAddress === p.secondaryAddress;
}

/**
 * The bind_ack for `bind` from a remembered answer: a copy with the bind's pfc_flags and call_id,
 * its frag sizes negotiated against `fragLimit` (§2.6), and the association's group id.
 */
export function ackFor(answer: FirstBindAnswer, bind: Buffer, fragLimit: number, assocGroupId: number): Buffer {
  const ack = Buffer.allocUnsafe(answer.ack.length);
  answer.ack.copy(ack);
  ack[FLAGS_OFFSET] = bind[FLAGS_OFFSET]!;
  ack.writeUInt32LE(bind.readUInt32LE(CALL_ID_OFFSET), CALL_ID_OFFSET);
  ack.writeUInt16LE(negotiateFragSize(bind.readUInt16LE(MAX_XMIT_FRAG_OFFSET), fragLimit), MAX_XMIT_FRAG_OFFSET);
  ack.writeUInt16LE(negotiateFragSize(bind.readUInt16LE(MAX_RECV_FRAG_OFFSET), fragLimit), MAX_RECV_FRAG_OFFSET);
  ack.writeUInt32LE(assocGroupId >>> 0, ASSOC_GROUP_OFFSET);
  return ack;
}

/**
 * A server's memory of first binds, shared by its connections (each server its own, so nothing of
 * one listener's policy leaks into another's). At most MAX_ENTRIES offers, oldest forgotten first:
 * a peer sending ever-new binds costs one copy of each (already read, at most a PDU) and only
 * pushes good clients back onto the full path.
 */
export class FirstBindCache {
  private readonly entries: Entry[] = [];

  /** The answer to a first bind seen before under the same policy, or undefined. */
  lookup(bind: Buffer, policy: FirstBindPolicy): FirstBindAnswer | undefined {
    const offerLength = bind.length - OFFER_OFFSET;
    for (const e of this.entries) {
      if (e.offer.length === offerLength && samePolicy(e, policy) && e.offer.compare(bind, OFFER_OFFSET) === 0) return e;
    }
    return undefined;
  }

  /** Remembers the answer to a first bind that was judged and encoded in full (no item over the limit). */
  remember(bind: Buffer, policy: FirstBindPolicy, accepted: readonly AcceptedContext[], ack: Buffer): void {
    if (bind.length < OFFER_OFFSET) return;
    if (this.entries.length >= MAX_ENTRIES) this.entries.shift();
    this.entries.push({
      ndr64: policy.ndr64,
      btfn: policy.btfn,
      maxContexts: policy.maxContexts,
      secondaryAddress: policy.secondaryAddress,
      offer: Buffer.from(bind.subarray(OFFER_OFFSET)),
      accepted,
      ack: Buffer.from(ack),
    });
  }
}
