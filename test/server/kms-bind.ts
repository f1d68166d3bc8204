// The bind a Windows client sends first (context 0, the KMS interface in NDR32, fragments of 5840
// bytes) and alter_context PDUs of the same shape.
import { encodeBind, type PresentationContextItem } from '../../src/protocol/rpc/bind';
import { KMS_INTERFACE, NDR32_SYNTAX, PTYPE } from '../../src/protocol/rpc/constants';

export function kmsBindNdr32(callId: number): Buffer {
  return encodeBind({
    ptype: PTYPE.BIND,
    callId,
    flags: 0x13,
    maxXmitFrag: 5840,
    maxRecvFrag: 5840,
    assocGroupId: 0,
    contexts: [{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] }],
  });
}

export function kmsAlterContext(callId: number, contexts: readonly PresentationContextItem[]): Buffer {
  return encodeBind({ ptype: PTYPE.ALTER_CONTEXT, callId, flags: 0x03, maxXmitFrag: 5840, maxRecvFrag: 5840, assocGroupId: 0, contexts });
}
