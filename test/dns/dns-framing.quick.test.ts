// TCP framing (RFC 1035 §4.2.2) without sockets: any chunking gives the same messages.
import t from 'tap';
import { DnsFrameReader, frameDnsMessage } from '../../src/protocol/dns/tcp-framing';
import { seededRandom as prng } from '../prng';

t.test('random chunk boundaries give back exactly the framed messages', async (t) => {
  const rnd = prng(7);
  for (let round = 0; round < 50; round++) {
    const messages = Array.from({ length: 1 + Math.floor(rnd() * 20) }, () =>
      Buffer.from(Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256))),
    );
    const stream = Buffer.concat(messages.map(frameDnsMessage));
    const r = new DnsFrameReader();
    const out: Buffer[] = [];
    for (let at = 0; at < stream.length; ) {
      const n = 1 + Math.floor(rnd() * 64);
      r.push(stream.subarray(at, at + n));
      at += n;
      for (let m = r.next(); m; m = r.next()) out.push(Buffer.from(m));
    }
    if (out.length !== messages.length || out.some((m, i) => !m.equals(messages[i]!))) {
      t.fail(`round ${round}: messages differ`);
      return;
    }
    t.equal(r.buffered, 0);
  }
});

t.test('a 65,535-byte message dripped byte by byte completes once, intact; partial bytes are counted', async (t) => {
  const big = Buffer.alloc(0xffff, 0x5a);
  const framed = frameDnsMessage(big);
  const r = new DnsFrameReader();
  let got: Buffer | null = null;
  for (let i = 0; i < framed.length; i++) {
    r.push(framed.subarray(i, i + 1));
    if (i < framed.length - 1) {
      if (r.hasMessage) return t.fail(`complete too early at ${i}`);
    } else {
      got = r.next();
    }
  }
  t.ok(got && got.equals(big));
  r.push(Buffer.from([0xff]));
  t.equal(r.buffered, 1, 'a lone length byte waits');
  t.equal(r.next(), null);
  t.equal(frameDnsMessage(Buffer.alloc(0)).toString('hex'), '0000', 'an empty message is a zero length');
});
