// How the host answers each presentation-context item of a bind/alter_context, and which context
// ids it then serves (PROTOCOL.md §2.5): the Windows host's table, not the C reference's shortcuts.
import type { TransferSyntax } from '../ndr/stub';
import type { ContextResult, PresentationContextItem } from './bind';
import {
  BTFN_SUPPORTED_FEATURES,
  BTFN_UUID_PREFIX,
  CONTEXT_RESULT,
  KMS_INTERFACE,
  NDR32_SYNTAX,
  NDR64_SYNTAX,
  NULL_SYNTAX,
  PROVIDER_REASON,
  type SyntaxId,
  type TransferSyntaxId,
} from './constants';

export interface ContextPolicy {
  readonly ndr64: boolean;
  readonly btfn: boolean;
}

export interface AcceptedContext {
  /** Position of the item in the PDU (and of its result in the reply). */
  readonly item: number;
  readonly contextId: number;
  readonly syntax: TransferSyntax;
}

export interface ContextJudgement {
  /** One result per item, in the items' order (n_results = n_context_elem, §2.6). */
  readonly results: readonly ContextResult[];
  /** Items accepted for NDR32 or NDR64 marshalling; BTFN acknowledgements are not contexts. */
  readonly accepted: readonly AcceptedContext[];
}

export function isBtfn(ts: TransferSyntaxId): boolean {
  return ts.uuid.toLowerCase().startsWith(BTFN_UUID_PREFIX);
}

/** The feature bits a BTFN offer asks for: the first byte of its 8-byte bitmask (GUID byte 8). */
function btfnFeatures(ts: TransferSyntaxId): number {
  return parseInt(ts.uuid.slice(BTFN_UUID_PREFIX.length, BTFN_UUID_PREFIX.length + 2), 16);
}

function sameTransferSyntax(a: TransferSyntaxId, b: TransferSyntaxId): boolean {
  return a.uuid.toLowerCase() === b.uuid && a.version === b.version;
}

function isKmsInterface(s: SyntaxId): boolean {
  // §2.5 last row (U1): a KMS UUID with a version other than 1.0 is another interface to us.
  return s.uuid.toLowerCase() === KMS_INTERFACE.uuid && s.major === KMS_INTERFACE.major && s.minor === KMS_INTERFACE.minor;
}

type Verdict = ContextResult & { readonly syntax?: TransferSyntax };

const ACCEPT_NDR32: Verdict = {
  result: CONTEXT_RESULT.ACCEPTANCE,
  reason: PROVIDER_REASON.NOT_SPECIFIED,
  transferSyntax: NDR32_SYNTAX,
  syntax: 'ndr32',
};
const ACCEPT_NDR64: Verdict = {
  result: CONTEXT_RESULT.ACCEPTANCE,
  reason: PROVIDER_REASON.NOT_SPECIFIED,
  transferSyntax: NDR64_SYNTAX,
  syntax: 'ndr64',
};

function reject(reason: number): Verdict {
  return { result: CONTEXT_RESULT.PROVIDER_REJECTION, reason, transferSyntax: NULL_SYNTAX };
}

/**
 * Judges one item: its transfer syntaxes in order, the first one the host supports wins (§2.4).
 * `ndr32Allowed` is false when this PDU has an accepted KMS/NDR64 item: a Windows host then
 * rejects KMS/NDR32 with (2, 2), which is what makes current clients send an alter_context.
 */
function judgeItem(item: PresentationContextItem, policy: ContextPolicy, ndr32Allowed: boolean): Verdict {
  const kms = isKmsInterface(item.abstractSyntax);
  for (const ts of item.transferSyntaxes) {
    // BTFN is judged for any abstract syntax; the host supports both feature bits.
    if (isBtfn(ts)) {
      if (policy.btfn)
        return { result: CONTEXT_RESULT.NEGOTIATE_ACK, reason: btfnFeatures(ts) & BTFN_SUPPORTED_FEATURES, transferSyntax: NULL_SYNTAX };
      continue;
    }
    if (!kms) continue;
    if (policy.ndr64 && sameTransferSyntax(ts, NDR64_SYNTAX)) return ACCEPT_NDR64;
    if (ndr32Allowed && sameTransferSyntax(ts, NDR32_SYNTAX)) return ACCEPT_NDR32;
  }
  // A foreign interface is (2, 1) whatever it carries, except an item offering nothing but BTFN
  // while BTFN is off: that is judged on its transfer syntax alone, (2, 2) (§2.5 table; C7).
  const onlyBtfn = item.transferSyntaxes.length > 0 && item.transferSyntaxes.every(isBtfn);
  return reject(!kms && !onlyBtfn ? PROVIDER_REASON.ABSTRACT_SYNTAX_NOT_SUPPORTED : PROVIDER_REASON.TRANSFER_SYNTAXES_NOT_SUPPORTED);
}

/**
 * Answers every item of one bind/alter_context PDU (§2.5). Rejections carry the all-zero transfer
 * syntax; an acceptance has reason 0; n results for n items, in order.
 */
export function judgePresentationContexts(items: readonly PresentationContextItem[], policy: ContextPolicy): ContextJudgement {
  // "NDR64 accepted in this PDU" depends on the verdicts themselves. Judging first with NDR32
  // allowed finds every item that takes NDR64 (disallowing NDR32 can only move an item further
  // along its own list, never away from an NDR64 it reached), so a second pass is a fixed point.
  let verdicts = items.map((item) => judgeItem(item, policy, true));
  if (verdicts.some((v) => v.syntax === 'ndr64')) verdicts = items.map((item) => judgeItem(item, policy, false));
  const accepted: AcceptedContext[] = [];
  verdicts.forEach((v, i) => {
    if (v.syntax !== undefined) accepted.push({ item: i, contextId: items[i]!.contextId, syntax: v.syntax });
  });
  return {
    results: verdicts.map(({ result, reason, transferSyntax }) => ({ result, reason, transferSyntax })),
    accepted,
  };
}

/** The result entry of an item accepted by the table above but past the connection's context limit. */
export const LIMIT_REJECTION: ContextResult = Object.freeze({
  result: CONTEXT_RESULT.PROVIDER_REJECTION,
  reason: PROVIDER_REASON.LOCAL_LIMIT_EXCEEDED,
  transferSyntax: NULL_SYNTAX,
});

/** What adding one accepted item did to the table. */
export type ContextChange = 'added' | 'changed' | 'unchanged' | 'full';

/**
 * Context id → the marshalling a request on it uses, for one connection (§2.5 bookkeeping). Ids
 * absent here are unknown. Accepted items are added in place (a re-offered id takes its new
 * syntax); nothing is ever removed. At most `limit` ids: each alter_context then costs time in
 * proportion to its own items, never to the table a client has built up.
 */
export class ContextTable {
  private readonly byId = new Map<number, TransferSyntax>();

  constructor(readonly limit: number) {}

  get size(): number {
    return this.byId.size;
  }

  get(contextId: number): TransferSyntax | undefined {
    return this.byId.get(contextId);
  }

  add(context: AcceptedContext): ContextChange {
    const before = this.byId.get(context.contextId);
    if (before === context.syntax) return 'unchanged';
    if (before === undefined && this.byId.size >= this.limit) return 'full';
    this.byId.set(context.contextId, context.syntax);
    return before === undefined ? 'added' : 'changed';
  }

  entries(): IterableIterator<[number, TransferSyntax]> {
    return this.byId.entries();
  }
}
