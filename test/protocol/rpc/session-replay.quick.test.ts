// Replays every captured conversation's client PDUs through an RpcSession and compares our replies
// with what the reference servers sent (PROTOCOL.md §2, §3; C3–C6, C10–C13, C35).
import t from 'tap';
import { decodeBindAck } from '../../../src/protocol/rpc/bind';
import { RpcSession, type KmsCall, type SessionOptions } from '../../../src/protocol/rpc/session';
import { EXCHANGES, pduBytes, type CapturedPdu, type Exchange } from './exchanges';

/** Offsets of the padding between sec_addr and n_results of a bind_ack/alter_context_resp (§2.6). */
function paddingRange(pdu: Buffer): [number, number] {
  const l = pdu.readUInt16LE(24);
  const start = 26 + l;
  return [start, start + ((4 - (start % 4)) % 4)];
}

function masked(pdu: Buffer, ranges: readonly [number, number][]): string {
  const copy = Buffer.from(pdu);
  for (const [a, b] of ranges) copy.fill(0xee, a, b);
  return copy.toString('hex');
}

interface Replay {
  readonly replies: { readonly ours: Buffer | undefined; readonly theirs: CapturedPdu; readonly close: boolean }[];
  readonly handled: { readonly message: string; readonly call: KmsCall }[];
}

function replay(ex: Exchange, ndr64: boolean): Replay {
  const replies: Replay['replies'] = [];
  const handled: Replay['handled'] = [];
  let callIndex = 0;
  const connections = [...new Set(ex.pdus.map((p) => p.connection))];
  for (const conn of connections) {
    const pdus = ex.pdus.filter((p) => p.connection === conn);
    const capturedAck = pdus.find((p) => p.ptype === 'bind_ack');
    if (!capturedAck) throw new Error(`${ex.name}: no bind_ack on connection ${conn}`);
    const ack = decodeBindAck(pduBytes(capturedAck));
    let groups = 0;
    const options: SessionOptions = {
      ndr64,
      btfn: true,
      maxStubBytes: 4096,
      secondaryAddress: ack.secondaryAddress,
      newAssocGroupId: () => {
        groups++;
        return ack.assocGroupId;
      },
    };
    const session = new RpcSession(options, (message, call) => {
      handled.push({ message: message.toString('hex'), call });
      const captured = ex.decoded.calls[callIndex++];
      if (!captured) throw new Error('more calls than captured');
      const hr = parseInt(captured.hresult, 16);
      return hr === 0 ? { response: Buffer.from(captured.kms_response_hex, 'hex') } : { hresult: hr };
    });
    for (let i = 0; i < pdus.length; i++) {
      const p = pdus[i]!;
      if (p.dir !== 'c2s') continue;
      const result = session.handlePdu(pduBytes(p));
      const theirs = pdus[i + 1];
      if (!theirs || theirs.dir !== 's2c') throw new Error(`${ex.name}: no captured reply after PDU ${i}`);
      replies.push({ ours: result.reply, theirs, close: result.close });
    }
    if (groups !== 1) throw new Error(`newAssocGroupId called ${groups} times on one connection`);
  }
  return { replies, handled };
}

const vlmcsd = EXCHANGES.filter((ex) => ex.name.includes('-vlmcsd-'));
const pykms = EXCHANGES.filter((ex) => ex.name.startsWith('vlmcs-pykms-'));

t.test('captures are present', async (t) => {
  t.equal(vlmcsd.length, 54, 'C-server captures (45 C client, 9 Python client)');
  t.equal(pykms.length, 8, 'Python-server captures');
});

t.test('C-server captures: our replies equal the captured server PDUs byte for byte', async (t) => {
  for (const ex of vlmcsd) {
    t.test(ex.name, async (t) => {
      const { replies, handled } = replay(ex, true);
      for (const { ours, theirs, close } of replies) {
        t.equal(close, false, `${theirs.ptype}: the connection stays open (§1.3)`);
        if (!ours) {
          t.fail(`no reply where the server sent ${theirs.ptype}`);
          continue;
        }
        const captured = pduBytes(theirs);
        if (theirs.ptype === 'alter_context_resp' || theirs.ptype === 'bind_ack') {
          // §2.6: the C reference leaves leftover bytes in the padding; ours must be zeros.
          const [a, b] = paddingRange(ours);
          t.same(paddingRange(captured), [a, b], 'same layout');
          t.equal(ours.subarray(a, b).toString('hex'), '00'.repeat(b - a), 'padding is zero');
          t.equal(masked(ours, [[a, b]]), masked(captured, [[a, b]]), theirs.ptype);
        } else if (theirs.ptype === 'fault') {
          // §2.9: the C reference's fault call_id and offsets 22–23 are not to be copied.
          t.equal(ours.subarray(22, 24).toString('hex'), '0000');
          t.equal(
            masked(ours, [
              [12, 16],
              [22, 24],
            ]),
            masked(captured, [
              [12, 16],
              [22, 24],
            ]),
            'fault',
          );
        } else {
          t.equal(ours.toString('hex'), theirs.hex, theirs.ptype);
        }
      }
      t.same(
        handled.map((h) => h.message),
        ex.decoded.calls.map((c) => c.kms_request_hex),
        'the handler got exactly the captured KMS requests (trailing stub bytes dropped)',
      );
      t.same(
        handled.map((h) => h.call.syntax),
        ex.decoded.calls.map((c) => c.transfer_syntax.toLowerCase()),
        'each call used the captured transfer syntax',
      );
    });
  }
});

t.test('Python-server captures (NDR64 off): same bind results, same responses', async (t) => {
  for (const ex of pykms) {
    t.test(ex.name, async (t) => {
      const { replies, handled } = replay(ex, false);
      for (const { ours, theirs } of replies) {
        if (!ours) {
          t.fail(`no reply where the server sent ${theirs.ptype}`);
          continue;
        }
        if (theirs.ptype === 'bind_ack') {
          t.same(decodeBindAck(ours).results, decodeBindAck(pduBytes(theirs)).results, 'bind results');
        } else {
          t.equal(ours.toString('hex'), theirs.hex, theirs.ptype);
        }
      }
      t.same(
        handled.map((h) => h.message),
        ex.decoded.calls.map((c) => c.kms_request_hex),
      );
    });
  }
});
