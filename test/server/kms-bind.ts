// The bind a Windows client sends first: context 0, the KMS interface in NDR32, fragments of 5840 bytes.
import { encodeBind } from '../../src/protocol/rpc/bind';
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
