// A flood with a spoofed source address drains that address's UDP allowance (dns.rateLimit). The
// real client behind the address must still get in: one limited query in dns.rateLimit.slip gets
// an empty reply with TC set (never larger than the query: no amplification), and the client's
// retry over TCP, which cannot be spoofed, is counted apart from UDP. On loopback the "spoofed"
// flood and the client share 127.0.0.1, as they would share the victim's address.
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { startDnsServer } from '../../src/dns/dns-server';
import { buildOptRecord, decodeMessage, encodeMessage, EMPTY_HEADER, RR_CLASS, RR_TYPE } from '../../src/protocol/dns/message';
import { truncatedReply } from '../../src/protocol/dns/truncated-reply';
import { seededRandom } from '../prng';
import { until } from '../wait';
import { captureLog } from './capture-log';

const ZONE = 'branch.test';
const SRV_NAME = `_vlmcs._tcp.${ZONE}`;

function query(id: number, options: { name?: string; edns?: boolean; rd?: boolean } = {}): Buffer {
  return encodeMessage({
    header: { ...EMPTY_HEADER, id, rd: options.rd ?? true },
    questions: [{ name: options.name ?? SRV_NAME, type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals: options.edns ? [buildOptRecord(1232)] : [],
  });
}

t.test('the truncated reply: the query ID and question, QR and TC set, nothing else, never larger', async (t) => {
  for (const edns of [false, true]) {
    for (const rd of [false, true]) {
      const q = query(0x1234, { edns, rd });
      const reply = truncatedReply(q);
      if (reply === null) {
        t.fail('a plain query gets one');
        continue;
      }
      const m = decodeMessage(reply);
      t.match(m.header, { id: 0x1234, qr: true, tc: true, rd, rcode: 0 }, `edns ${edns}, rd ${rd}`);
      t.same(m.questions, [{ name: SRV_NAME, type: RR_TYPE.SRV, class: RR_CLASS.IN }]);
      t.same([m.answers.length, m.authorities.length, m.additionals.length], [0, 0, 0]);
      t.ok(reply.length <= q.length, 'no larger than the query');
    }
  }
});

t.test('what is not a plain one-question query gets silence', async (t) => {
  const q = query(7);
  const response = Buffer.from(q);
  response[2]! |= 0x80;
  const notify = Buffer.from(q);
  notify[2] = (notify[2]! & ~0x78) | (4 << 3);
  const twoQuestions = Buffer.from(q);
  twoQuestions.writeUInt16BE(2, 4);
  const cut = q.subarray(0, q.length - 1);
  const pointer = Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 33, 0, 1])]);
  const longLabel = Buffer.concat([q.subarray(0, 12), Buffer.from([64]), Buffer.alloc(64, 0x61), Buffer.from([0, 0, 33, 0, 1])]);
  const cases: [string, Buffer][] = [
    ['a response', response],
    ['a NOTIFY', notify],
    ['two questions', twoQuestions],
    ['a question cut short', cut],
    ['a compression pointer', pointer],
    ['a label over 63 bytes', longLabel],
    ['a header alone', q.subarray(0, 12)],
  ];
  for (const [what, bytes] of cases) t.equal(truncatedReply(bytes), null, what);
});

t.test('random bytes never throw, and any reply is a truncated one no larger than its input', async (t) => {
  const seed = 0x511b;
  const random = seededRandom(seed);
  const base = query(1);
  let replies = 0;
  for (let n = 0; n < 5000; n++) {
    // Half are a real query with a few bytes changed, half random lengths of random bytes.
    const bytes = random() < 0.5 ? Buffer.from(base) : Buffer.alloc(Math.floor(random() * 80));
    const rate = bytes.length === base.length ? 0.05 : 1;
    for (let i = 0; i < bytes.length; i++) if (random() < rate) bytes[i] = random() * 256;
    const reply = truncatedReply(bytes);
    if (reply === null) continue;
    replies++;
    if (reply.length > bytes.length || (reply[2]! & 0x82) !== 0x82 || reply.readUInt16BE(0) !== bytes.readUInt16BE(0)) {
      t.fail(`seed ${seed} case ${n}: ${bytes.toString('hex')} -> ${reply.toString('hex')}`);
      return;
    }
  }
  t.ok(replies > 0, `some of the changed queries still got one (${replies})`);
});

t.test("a flood on one address: one limited query in `slip` gets TC, and the client's TCP retry is not held back", async (t) => {
  const { log } = captureLog();
  const config: AppConfig['dns'] = {
    ...DEFAULTS.dns,
    zones: [
      { domain: ZONE, ttlSeconds: 60, hosts: [{ target: `kms.${ZONE}`, port: 1688, priority: 0, weight: 0, addresses: ['192.0.2.10'] }] },
    ],
    // Refilled about never during the test: whatever is over the burst stays over it.
    rateLimit: { responsesPerSecond: 0.01, burst: 3, slip: 2 },
  };
  const h = await startDnsServer(config, { kmsPort: 1688, hostName: 'kms', addresses: () => ['192.0.2.10'], log }, ['127.0.0.1:0']);
  t.teardown(() => h.close());
  const port = h.addresses[0]!.port;

  const s = dgram.createSocket('udp4');
  const replies: Buffer[] = [];
  s.on('message', (m) => replies.push(m));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => s.close());
  const sent = Array.from({ length: 13 }, (_, i) => query(0x100 + i, { edns: true }));
  for (const q of sent) s.send(q, port, '127.0.0.1');
  await until(() => h.stats().rateLimited === 10 && replies.length === 3 + 5, 'the burst answered, ten limited, five of them slipped', {
    everyMs: 5,
  });
  const full = replies.filter((r) => !decodeMessage(r).header.tc);
  const truncated = replies.filter((r) => decodeMessage(r).header.tc);
  t.equal(full.length, 3, 'the burst got answers');
  t.ok(
    full.every((r) => decodeMessage(r).answers.length === 1),
    'with the SRV record',
  );
  t.equal(truncated.length, 5, 'one in two of the ten over the limit');
  t.equal(h.stats().slipped, 5);
  for (const r of truncated) {
    const m = decodeMessage(r);
    const asked = sent.find((q) => q.readUInt16BE(0) === m.header.id);
    t.ok(
      asked !== undefined && r.length <= asked.length && m.answers.length === 0,
      `0x${m.header.id.toString(16)}: empty, not larger than its query`,
    );
  }

  // The client, told to use TCP, asks there from the same address: answered, not limited.
  const tcp = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
  t.teardown(() => tcp.destroy());
  let got = Buffer.alloc(0);
  tcp.on('data', (d) => (got = Buffer.concat([got, d])));
  tcp.on('error', () => {});
  const q = query(0x7c9);
  tcp.write(Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]));
  await until(() => got.length >= 2 && got.length >= 2 + got.readUInt16BE(0), 'the TCP answer', {
    on: [{ emitter: tcp, events: ['data'] }],
  });
  const answer = decodeMessage(got.subarray(2, 2 + got.readUInt16BE(0)));
  t.match(answer.header, { id: 0x7c9, tc: false, rcode: 0 });
  t.equal(answer.answers.length, 1, 'the SRV record');
  t.equal(h.stats().rateLimited, 10, 'the TCP query was not counted against the drained UDP allowance');
});
