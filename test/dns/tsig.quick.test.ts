// TSIG against independently assembled bytes (RFC 8945 §4.3); that BIND accepts our signatures
// and we accept its answers is shown by registrar.test.ts against a real named.
import t from 'tap';
import { createHmac } from 'node:crypto';
import { signMessage, verifyResponse, parseTsigSecret, type TsigKey } from '../../src/dns/tsig';
import { decodeMessage } from '../../src/protocol/dns/message';
import { bytes } from '../bytes';

const KEY: TsigKey = { name: 'Kms-Update.', algorithm: 'hmac-sha256', secret: Buffer.from('0123456789abcdef0123456789abcdef') };
const NOW = 0x0000_6543_2100; // seconds

// An UPDATE for zone "z." with nothing else: ID 0xbeef, opcode 5.
const UPDATE = bytes('beef 2800 0001 0000 0000 0000 017a00 0006 0001');
// RFC 8945 §4.3.3 variables for key "kms-update." (lower-cased) and hmac-sha256, fudge 300.
const KEY_WIRE = Buffer.from('0a6b6d732d75706461746500', 'hex');
const ALG_WIRE = Buffer.from('0b686d61632d73686132353600', 'hex');
const variables = (time: number, error = 0) =>
  Buffer.concat([
    KEY_WIRE,
    Buffer.from('00ff00000000', 'hex'),
    ALG_WIRE,
    Buffer.from([
      0,
      0,
      (time >>> 24) & 0xff,
      (time >>> 16) & 0xff,
      (time >>> 8) & 0xff,
      time & 0xff,
      0x01,
      0x2c,
      error >> 8,
      error & 0xff,
      0,
      0,
    ]),
  ]);

t.test('request MAC = HMAC-SHA256(message ‖ variables); the TSIG RR is appended and ARCOUNT bumped', async (t) => {
  const { signed, mac } = signMessage(UPDATE, KEY, NOW);
  const expected = createHmac('sha256', KEY.secret)
    .update(Buffer.concat([UPDATE, variables(NOW)]))
    .digest();
  t.equal(mac.toString('hex'), expected.toString('hex'));
  t.equal(signed.readUInt16BE(10), 1, 'ARCOUNT');
  t.same(signed.subarray(0, 10), UPDATE.subarray(0, 10));
  const tsigRr = signed.subarray(UPDATE.length);
  const rdata = Buffer.concat([
    ALG_WIRE,
    Buffer.from([0, 0, 0x65, 0x43, 0x21, 0x00, 0x01, 0x2c, 0x00, 0x20]),
    expected,
    Buffer.from('beef00000000', 'hex'),
  ]);
  t.equal(
    tsigRr.toString('hex'),
    Buffer.concat([
      KEY_WIRE,
      Buffer.from('00fa00ff00000000', 'hex'),
      Buffer.from([rdata.length >> 8, rdata.length & 0xff]),
      rdata,
    ]).toString('hex'),
    'TSIG RR: owner, type 250, class ANY, TTL 0, RDATA',
  );
  t.equal(decodeMessage(signed).additionals[0]!.data.kind, 'tsig', 'decodes');
});

/** Signs a response the way a server does, with independent code. */
function serverResponse(requestMac: Buffer, time: number, opts: { tamper?: boolean; error?: number; key?: Buffer } = {}): Buffer {
  const body = Buffer.from(UPDATE);
  body.writeUInt16BE(0xa800, 2); // QR, opcode 5, NOERROR
  const mac = createHmac('sha256', opts.key ?? KEY.secret)
    .update(Buffer.concat([Buffer.from([0, requestMac.length]), requestMac, body, variables(time, opts.error ?? 0)]))
    .digest();
  const rdata = Buffer.concat([
    ALG_WIRE,
    Buffer.from([0, 0, (time >>> 24) & 0xff, (time >>> 16) & 0xff, (time >>> 8) & 0xff, time & 0xff, 0x01, 0x2c, 0x00, 0x20]),
    mac,
    Buffer.from([0xbe, 0xef, (opts.error ?? 0) >> 8, (opts.error ?? 0) & 0xff, 0, 0]),
  ]);
  const out = Buffer.concat([
    body,
    KEY_WIRE,
    Buffer.from('00fa00ff00000000', 'hex'),
    Buffer.from([rdata.length >> 8, rdata.length & 0xff]),
    rdata,
  ]);
  out.writeUInt16BE(1, 10);
  if (opts.tamper) out.writeUInt16BE(0xa803, 2); // rcode changed after signing
  return out;
}

t.test('response verification', async (t) => {
  const { mac } = signMessage(UPDATE, KEY, NOW);
  t.same(verifyResponse(serverResponse(mac, NOW + 10), KEY, mac, NOW + 12), { ok: true });
  t.match(verifyResponse(serverResponse(mac, NOW, { tamper: true }), KEY, mac, NOW), { ok: false, problem: 'mac' }, 'altered answer');
  t.match(
    verifyResponse(serverResponse(mac, NOW, { key: Buffer.from('other') }), KEY, mac, NOW),
    { ok: false, problem: 'mac' },
    'other secret',
  );
  t.match(
    verifyResponse(serverResponse(Buffer.alloc(32), NOW), KEY, mac, NOW),
    { ok: false, problem: 'mac' },
    'not chained to our request',
  );
  t.match(verifyResponse(serverResponse(mac, NOW), KEY, mac, NOW + 301), { ok: false, problem: 'time' }, 'outside the fudge');
  t.match(
    verifyResponse(serverResponse(mac, NOW, { error: 16 }), KEY, mac, NOW),
    { ok: false, problem: 'error', tsigError: 16 },
    'BADSIG from the server',
  );
  t.match(verifyResponse(serverResponse(mac, NOW), { ...KEY, name: 'other-key' }, mac, NOW), { ok: false, problem: 'key' });
  t.match(verifyResponse(UPDATE, KEY, mac, NOW), { ok: false, problem: 'unsigned' });
});

t.test('secrets: base64 or a BIND key file', async (t) => {
  t.equal(parseTsigSecret('c2VjcmV0')?.toString(), 'secret');
  t.equal(parseTsigSecret('key "k" {\n  algorithm hmac-sha256;\n  secret "c2VjcmV0";\n};\n')?.toString(), 'secret');
  t.equal(parseTsigSecret('not base64!'), undefined);
  t.equal(parseTsigSecret(''), undefined);
});
