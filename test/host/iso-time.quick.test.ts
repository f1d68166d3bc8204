// The client time's text is Date.prototype.toISOString's, for every time Date can hold, and
// undefined beyond (a FILETIME can name a time Date cannot).
import t from 'tap';
import { JsonBytes } from '../../src/json-bytes';
import { isoTime, writeIsoTime } from '../../src/host/iso-time';
import { seededRandom } from '../prng';

const MAX = 8.64e15;

t.test('the same text as toISOString, at the edges and across the range', async (t) => {
  const edges = [0, -0, 1, -1, 999, 1000, 86_399_999, 86_400_000, -86_400_000, -86_400_001, MAX, -MAX, MAX - 1, -MAX + 1];
  const near = [Date.UTC(2026, 11, 5, 0, 45, 7, 9), Date.UTC(2000, 1, 29, 23, 59, 59, 999), Date.UTC(9999, 11, 31, 23, 59, 59, 999)];
  const fractional = [0.5, -0.5, 1.999, -1.999, 1_764_892_800_123.7];
  const seed = 0x150;
  const random = seededRandom(seed);
  const spread = Array.from({ length: 2000 }, () => Math.round((random() * 2 - 1) * MAX));
  // Many on one day and its neighbours, as a host's clients send them.
  const oneDay = Array.from({ length: 500 }, () => Date.UTC(2026, 11, 5) + Math.floor((random() * 3 - 1) * 86_400_000));
  const all = [...edges, ...near, ...fractional, ...spread, ...oneDay];
  const written = (ms: number): string | undefined => {
    const w = new JsonBytes(Buffer.alloc(40), 0);
    return writeIsoTime(w, ms) ? w.buf.toString('latin1', 0, w.at) : undefined;
  };
  // The string and the bytes written into a log line; alternated, so each finds the other's day kept.
  const differing = all.filter((ms) => isoTime(ms) !== new Date(ms).toISOString() || written(ms) !== isoTime(ms)).slice(0, 5);
  t.same(
    differing.map((ms) => [ms, isoTime(ms)]),
    [],
    `seed ${seed}: ${all.length} times equal to toISOString`,
  );
});

t.test("beyond Date's range there is no text", async (t) => {
  for (const ms of [MAX + 1, -MAX - 1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1.8e15 * 10]) {
    t.equal(isoTime(ms), undefined, String(ms));
    const w = new JsonBytes(Buffer.alloc(40), 0);
    t.notOk(writeIsoTime(w, ms), `${ms}: nothing written`);
    t.equal(w.at, 0);
  }
});
